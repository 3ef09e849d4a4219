"""RFC 6962 transparency logs of the certificates KMI issues, and the threat-signal monitor."""
