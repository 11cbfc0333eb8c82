"""The queue's web page (``reidbench serve``): server-rendered, no assets from outside."""
