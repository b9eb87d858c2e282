"""GitHub webhook routing: one router per concern, composed here."""

from gidgethub.routing import Router

from handlers.github import checks, comments, installs, labels, pulls

router = Router(comments.router, labels.router, pulls.router, checks.router, installs.router)
