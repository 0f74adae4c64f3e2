"""The web app: FastAPI routes and the static draw-a-digit page."""
