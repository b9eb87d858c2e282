"""GitHub webhook routing: one router per concern, composed here."""

from handlers.github import checks, comments, installs, labels, pulls
from handlers.intake import Router

router = Router(comments.router, labels.router, pulls.router, checks.router, installs.router)
