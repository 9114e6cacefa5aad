"""MONAI bundles: export a run as a bundle laid out like the Model Zoo's, and recognise the bundles medvp wrote."""

from pipeline.bundle.export import export_bundle, verify_bundle
from pipeline.bundle.metadata import SCHEMA_URL, configs_digest, is_medvp_bundle, read_metadata, schema_path

__all__ = ["SCHEMA_URL", "configs_digest", "export_bundle", "is_medvp_bundle", "read_metadata", "schema_path",
           "verify_bundle"]
