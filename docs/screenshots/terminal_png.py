"""Render captured terminal text (``tmux capture-pane -p -S - -t SESSION > demo.txt``) as a PNG.

    python docs/screenshots/terminal_png.py demo.txt docs/screenshots/demo_terminal.png [--columns 140]

Dark background, DejaVu Sans Mono (Pillow's bundled default font when it is missing); blank lines at the end are
dropped. Used for the README's screenshot of a demo run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
BACKGROUND, FOREGROUND = (30, 30, 30), (220, 220, 220)


def render(lines: list[str], out: Path, size: int = 14, columns: int | None = None) -> Path:
    try:
        font = ImageFont.truetype(FONT, size)
    except OSError:
        font = ImageFont.load_default(size)
    _, top, _, bottom = font.getbbox("Mg")
    cell_width, cell_height = font.getlength("M"), int((bottom - top) * 1.3) + 2
    columns = columns or max((len(line) for line in lines), default=80)
    image = Image.new("RGB", (int(columns * cell_width) + 24, len(lines) * cell_height + 24), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((12, 12 + row * cell_height), line[:columns], font=font, fill=FOREGROUND)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("text", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--columns", type=int, default=None)
    args = parser.parse_args()
    lines = args.text.read_text(encoding="utf-8").rstrip().splitlines()
    print(render(lines, args.out, columns=args.columns))


if __name__ == "__main__":
    main()
