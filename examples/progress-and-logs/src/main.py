"""Works in steps, reporting as it goes: clients see the log lines and the progress (0-100)
while the execution runs."""

import time


def run(params, logger):
    steps = params.get("steps", 4)
    pause = params.get("seconds_per_step", 0.5)
    logger.debug(f"params: {params}")
    for step in range(1, steps + 1):
        time.sleep(pause)
        logger.info(f"step {step} of {steps} done")
        logger.send_progress(100 * step // steps)
    logger.warning("a warning: shown to the user, the run goes on")
    logger.error("an error line: also just a line, the run still succeeds")
    return {"steps": steps}
