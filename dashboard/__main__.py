"""``python -m dashboard``: serve the dashboard (also the main file NiceGUI's test fixtures run)."""

from dashboard.app import main

if __name__ in {"__main__", "__mp_main__"}:
    main()
