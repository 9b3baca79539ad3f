"""Run an example (or any script folder) on this machine, without a server:

    python examples/run_local.py examples/hello '{"name": "Ada"}'

It calls src/main.py's run(params, logger) with a logger that prints, and prints the results as
JSON; an exception prints its traceback and exits 1, as the execution would end FAILED. The
params get EXECUTION_ID and ENV as on the server. Standard library only: install the script's
requirements.txt first if it has any. logger.upload copies the file into ./artifacts/.
"""

import importlib
import json
import os
import shutil
import sys
import traceback
import uuid


class PrintLogger:
    """The methods the server's logger has (docs/scripts.md), printing instead of sending."""

    def _line(self, level, message, *args):
        print(f"{level}: {message % args if args else message}", flush=True)

    def debug(self, message, *args):
        self._line("DEBUG", message, *args)

    def info(self, message, *args):
        self._line("INFO", message, *args)

    def warning(self, message, *args):
        self._line("WARNING", message, *args)

    warn = warning

    def error(self, message, *args):
        self._line("ERROR", message, *args)

    def critical(self, message, *args):
        self._line("CRITICAL", message, *args)

    def exception(self, message, *args):
        self._line("ERROR", f"{message}\n{traceback.format_exc()}", *args)

    def send_progress(self, progress):
        print(f"PROGRESS: {progress}", flush=True)

    def upload(self, path, name=None, media_type=None):
        name = name or os.path.basename(path)
        os.makedirs("artifacts", exist_ok=True)
        target = os.path.abspath(os.path.join("artifacts", name))
        shutil.copyfile(path, target)
        print(f"UPLOAD: {name} -> {target}", flush=True)
        url = "file://" + target
        return {"name": name, "url": url, "uri": {"uri": url, "type": "local"}}


def main(folder, raw_params="{}"):
    sys.path.insert(0, os.path.abspath(folder))
    main_module = importlib.import_module("src.main")
    params = json.loads(raw_params)
    params.update(EXECUTION_ID=str(uuid.uuid4()), ENV="dev")
    try:
        results = main_module.run(params, PrintLogger())
    except Exception:
        print("ERROR: Execution failed:\n" + traceback.format_exc(), flush=True)
        return 1
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
