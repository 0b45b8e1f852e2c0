"""The applications the servers serve. Servers import them with bench/apps on PYTHONPATH
(`wsgi_app:application`); the benchmark itself imports them as `apps.<module>`.
"""
