"""The area of a rectangle. configuration.json's params_schema guarantees width and height are
positive numbers and unit is "m" or "km": a run with anything else is refused (400) before it
is queued, so this code does not check them again."""


def run(params, logger):
    unit = params.get("unit", "m")
    area = params["width"] * params["height"]
    logger.info(f"{params['width']} {unit} x {params['height']} {unit}")
    return {"area": area, "unit": f"{unit}2"}
