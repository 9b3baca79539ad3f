"""gunicorn reads this file from the folder it starts in: every `gunicorn main:app` here (the
image, `./gefapi.sh start`, the e2e stack, the benchmark). Options given on the command line or
in GUNICORN_CMD_ARGS still apply on top."""


def post_worker_init(worker):
    """Requests gunicorn refuses itself (414, 431, malformed HTTP) get the JSON error shape."""
    from gefapi import gunicorn_errors

    gunicorn_errors.install()
