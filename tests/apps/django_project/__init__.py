"""A minimal Django project (no database, no contrib apps) served by corral in the tests."""
