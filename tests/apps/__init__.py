"""Real framework applications (Flask, Django) that the integration tests serve with corral.

`--pythonpath tests` puts this directory's parent on the path, so they import as
`apps.flask_app:app` and `apps.django_project.wsgi:application`.
"""
