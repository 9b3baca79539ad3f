"""The smallest script: one log line and a result."""


def run(params, logger):
    name = params.get("name", "world")
    logger.info(f"Saying hello to {name}")
    return {"greeting": f"Hello, {name}!"}
