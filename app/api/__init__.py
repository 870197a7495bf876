"""The HTTP floor: routes, request and response schemas, checks, problem responses, middleware.

Only this floor knows HTTP: URLs, headers and status codes are built here, never below.
"""
