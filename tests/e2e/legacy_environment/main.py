import gefcore  # noqa: F401 (importing it runs the execution, as in the environment images)
