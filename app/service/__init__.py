"""The service floor: what the API asks for, in the service's own terms (no HTTP here), built on
the stores and the worker."""
