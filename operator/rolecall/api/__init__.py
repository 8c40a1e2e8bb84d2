"""The rolecall API (group rolecall.dev): pydantic v2 models, the single source of the CRD schemas."""
