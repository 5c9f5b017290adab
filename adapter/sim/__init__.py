"""A local simulator of the ministry integration platform, for the demo and the tests.

Never imported by production code."""
