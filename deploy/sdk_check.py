"""Parse App Engine config files with the Cloud SDK's own parsers.

    <SDK>/platform/bundledpythonunix/bin/python3 deploy/sdk_check.py FILE ...

Run by the SDK's bundled Python, not the project's: it imports the parsers
`gcloud app deploy` validates with (googlecloudsdk.appengine.api), so a key
App Engine does not know, or a malformed value, fails here before a deploy.
Prints one JSON object per file; exits 1 on the first file that fails.
"""

import json
import os
import sys


def main(paths):
    sdk_lib = os.path.join(os.environ["CLOUDSDK_ROOT"], "lib")
    sys.path[:0] = [sdk_lib, os.path.join(sdk_lib, "third_party")]
    from googlecloudsdk.appengine.api import appinfo, croninfo, dispatchinfo

    for path in paths:
        name = os.path.basename(path)
        try:
            with open(path) as handle:
                if name == "dispatch.yaml":
                    info = dispatchinfo.LoadSingleDispatch(handle)
                    summary = {"dispatch": [[r.url, r.service] for r in info.dispatch]}
                elif name == "cron.yaml":
                    info = croninfo.LoadSingleCron(handle)
                    summary = {"cron": [[c.url, c.schedule] for c in info.cron]}
                else:
                    info = appinfo.LoadSingleAppInfo(handle)
                    scaling = info.automatic_scaling
                    summary = {
                        "service": info.service or info.module or "default",
                        "runtime": info.runtime,
                        "instance_class": info.instance_class,
                        "entrypoint": info.entrypoint,
                        "target_cpu_utilization": scaling.target_cpu_utilization,
                        "max_concurrent_requests": scaling.max_concurrent_requests,
                        "env_variables": dict(info.env_variables or {}),
                    }
        except Exception as error:  # any parser error: say which file
            sys.stderr.write(f"{path}: {error}\n")
            return 1
        sys.stdout.write(json.dumps({"file": path, **summary}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
