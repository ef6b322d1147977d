"""``python -m keystile.events``: the event writer process a server starts (see :mod:`keystile.events.child`)."""

from keystile.events.child import main

main()
