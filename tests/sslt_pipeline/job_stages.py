"""Stage functions for the job tests (module level, so that a job process imports them)."""
import json
import time


def timed(seconds, fail=False):
    def run(folder, inputs):
        start = time.time()
        time.sleep(seconds)
        if fail:
            raise RuntimeError(f"{folder.name} broke on purpose")
        return {"start": start, "end": time.time(), "inputs": json.loads(json.dumps(inputs))}

    return run
