"""A script that fails: any exception out of run() ends the execution FAILED, with the
traceback as an ERROR line in its log. Raise with a message a user can act on."""


def load_raster(path):
    raise ValueError(f"the input raster {path} is empty")


def run(params, logger):
    logger.info("loading the input")
    load_raster(params.get("input", "input.tif"))
    return {"never": "reached"}
