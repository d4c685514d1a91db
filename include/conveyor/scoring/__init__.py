"""Batch scoring with the production model: chunked, schema-checked, with lineage."""
