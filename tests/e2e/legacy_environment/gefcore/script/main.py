def run(params, logger):
    raise RuntimeError("the script was not copied into gefcore/script")
