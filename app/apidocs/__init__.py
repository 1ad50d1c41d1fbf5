"""The human-readable API page, rendered on the server from the OpenAPI document."""
