"""The page's routes, one APIRouter per concern (included by :func:`reidbench.web.app.create_app`)."""
