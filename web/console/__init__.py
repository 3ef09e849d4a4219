"""The operator console at /console/: server-rendered pages whose every action calls a pki use case.

Views shape input with Django forms, ask ``pki.access`` what the user may see and do, call the
same use cases the REST API calls, and show domain errors next to the field they concern.
"""
