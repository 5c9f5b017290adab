"""THADS exchange adapter: moves signed case, judgment and receipt packets between the
enforcement databases and the national channels (LGSP over SOAP, the document axis)."""

__version__ = "0.1.0"
