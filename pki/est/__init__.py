"""EST (RFC 7030): labels, enrollment codes and the enrollment use cases behind /.well-known/est/."""
