"""Container probe: exit 0 when ``GET http://127.0.0.1:$DCES_PORT<path>`` answers 200, else 1.

The image has no curl; this needs only the standard library and starts in ~30 ms. Used by the
image's HEALTHCHECK (``/readyz``) and by exec probes where the service binds to loopback
(docker/k8s-sidecar.yaml). Usage: ``dces-healthcheck [/readyz|/livez]``.
"""

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/readyz"
    url = f"http://127.0.0.1:{os.environ.get('DCES_PORT', '8080')}{path}"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
