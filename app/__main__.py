"""``python -m app`` is the ``admin-mit`` command."""

from app.cli import main

main()
