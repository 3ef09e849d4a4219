"""The REST API's views, one module per resource (web/api/urls.py routes them).

Declarative: every state change calls a pki use case (never a model save). base.py holds what they
share; the query-string filters are web/api/filters.py.
"""
