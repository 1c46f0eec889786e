"""The built-in job handlers: download a file, reboot the board, set configuration keys, update the firmware."""

from iotjobs import store
from iotjobs.runner import Reboot

# Board settings, changed by the board's own code before the runner starts (never by a job document).
DOWNLOAD_MAX = 1024 * 1024  # bytes; a document may ask for less ("maxSize"), never for more
DOWNLOAD_CA = None  # path of a DER CA certificate: with it, https downloads verify the server
# Where config jobs write: not the deploy's config.json, which a redeploy replaces (a board overlays this file on it).
CONFIG_PATH = "settings.json"
# Run by new firmware before it confirms itself: falsy or raising means roll back; None: reaching the runner passes.
OTA_SELF_TEST: object = None


def _arg(params, name, index):
    # A managed-template input passes its parameters as "args"; its "path" is the handler's folder, not ours.
    args = params.get("args")
    if isinstance(args, list):
        return args[index] if len(args) > index else None
    return params.get(name)


def download(execution, progress):
    """{"operation": "download", "url", "path", "sha256"?, "maxSize"?}; or AWS-Download-File's args [url, path]."""
    from iotjobs.download import get  # loaded by the first download job only

    params = execution.get("input") or {}
    url = _arg(params, "url", 0)
    path = _arg(params, "path", 1)
    sha256 = _arg(params, "sha256", 2)
    if not isinstance(url, str) or not isinstance(path, str) or not path:
        raise ValueError("download needs a url and a path")
    if sha256 is not None and (not isinstance(sha256, str) or len(sha256) != 64):
        raise ValueError("sha256 must be 64 hex digits")
    size_max = DOWNLOAD_MAX
    asked = params.get("maxSize")
    if isinstance(asked, int) and 0 < asked < size_max:
        size_max = asked
    # After a reset mid-download the checkpoint is "downloading": the partial file is simply started over.
    progress({"progress": "0%"}, "downloading")
    size, digest = get(url, path, sha256, size_max, lambda percent: progress({"progress": "%d%%" % percent},
                                                                               "downloading"), DOWNLOAD_CA)
    return {"path": path, "size": str(size), "sha256": digest}


def reboot(execution, progress):
    """Checkpoint, then have the runner reset the board; SUCCEEDED is reported after the restart."""
    if execution.get("checkpoint") == "rebooting":
        return {"rebooted": "true"}
    progress({"state": "rebooting"}, "rebooting")
    raise Reboot()


def config(execution, progress):
    """{"operation": "config", "settings": {key: value or null to delete}}; or args ["key=value", ...]."""
    params = execution.get("input") or {}
    settings = params.get("settings")
    if settings is None and isinstance(params.get("args"), list):
        settings = {}
        for arg in params["args"]:
            arg = str(arg)
            eq = arg.find("=")
            if eq < 1:
                raise ValueError("config args are key=value")
            settings[arg[:eq]] = arg[eq + 1 :]
    if not isinstance(settings, dict) or not settings:
        raise ValueError("config needs a settings object")
    current = store.read_json(CONFIG_PATH, {})
    if not isinstance(current, dict):
        current = {}
    for key in settings:
        value = settings[key]
        if value is None:
            current.pop(key, None)
        else:
            current[key] = value
    store.write_json(CONFIG_PATH, current)
    return {"path": CONFIG_PATH, "changed": str(len(settings)), "keys": str(len(current))}


def ota(execution, progress):
    """{"operation": "ota", "url", "sha256", "size", "version"?}: a firmware update (iotjobs.ota, loaded only here)."""
    from iotjobs import ota as firmware

    return firmware.update(execution, progress, OTA_SELF_TEST, DOWNLOAD_CA)
