"""Put a working detectron2 into the current Python environment, with no compiler step, GPU or GitHub.

    python tools/install_detectron2.py            # what `make venv` runs
    python tools/install_detectron2.py --check    # only say what is installed

1. A detectron2 that already imports (your own compiled build, say) is used untouched.
2. Otherwise FAIR's detectron2 Python code is installed from PyPI's `sal-detectron2==0.7.2` wheel, the only
   current detectron2 build there. That wheel is tagged cp310 because of its compiled `_C` (Python 3.10,
   CUDA 12). We check its sha256, drop the compiled `_C`, put tools/detectron2_stand_in/_C.py in its place,
   re-tag it py3-none-any and pip-install it with its dependencies and `setuptools<81` (detectron2's
   model_zoo imports pkg_resources). Ops that need the compiled `_C` (rotated boxes, deformable conv) then
   raise an error naming the op; COCO evaluation uses pycocotools (transfer/detectron2_env.py).
"""
import argparse
import base64
import hashlib
import importlib.util
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "sal-detectron2==0.7.2"
WHEEL_SHA256 = "491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
STAND_IN = Path(__file__).resolve().parent / "detectron2_stand_in" / "_C.py"
EXTRA_REQUIREMENTS = ["setuptools<81"]


def installed_detectron2():
    """'compiled' | 'stand-in' | 'stand-in (outdated)' | 'python-only' | None (not importable)."""
    if importlib.util.find_spec("detectron2") is None:
        return None
    c_spec = importlib.util.find_spec("detectron2._C")
    if c_spec is None or c_spec.origin is None:
        return "python-only"
    if not c_spec.origin.endswith(".py"):
        return "compiled"
    same = Path(c_spec.origin).read_bytes() == STAND_IN.read_bytes()
    return "stand-in" if same else "stand-in (outdated)"


def download_wheel(directory):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.10",
         "--implementation", "cp", "--abi", "cp310", "--platform", "linux_x86_64", "-d", str(directory),
         WHEEL_REQUIREMENT],
        check=True,
    )
    (wheel,) = Path(directory).glob("sal_detectron2-*.whl")
    return wheel


def record_hash(data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest},{len(data)}"


def rebuild_as_pure_python(wheel, out_dir):
    """Copy `wheel` without its compiled `_C`, with the stand-in, as a py3-none-any wheel (RECORD rewritten)."""
    found = hashlib.sha256(Path(wheel).read_bytes()).hexdigest()
    if found != WHEEL_SHA256:
        raise SystemExit(f"error: {wheel} has sha256 {found}, expected {WHEEL_SHA256}; delete it and download "
                         f"{WHEEL_REQUIREMENT} again")
    out = Path(out_dir) / "sal_detectron2-0.7.2-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        dist_info = next(n.split("/")[0] for n in src.namelist() if n.endswith(".dist-info/WHEEL"))
        for name in src.namelist():
            if name.startswith("detectron2/_C.") or name == f"{dist_info}/RECORD":
                continue
            data = src.read(name)
            if name == f"{dist_info}/WHEEL":
                data = (b"Wheel-Version: 1.0\nGenerator: ssl-transfer tools/install_detectron2.py\n"
                        b"Root-Is-Purelib: true\nTag: py3-none-any\n")
            dst.writestr(name, data)
            record.append(f"{name},{record_hash(data)}")
        stand_in = STAND_IN.read_bytes()
        dst.writestr("detectron2/_C.py", stand_in)
        record.append(f"detectron2/_C.py,{record_hash(stand_in)}")
        record.append(f"{dist_info}/RECORD,,")
        dst.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report which detectron2 is installed")
    parser.add_argument("--wheel", type=Path, help=f"a local copy of the {WHEEL_REQUIREMENT} wheel (no download)")
    args = parser.parse_args()

    state = installed_detectron2()
    if args.check or state in ("compiled", "python-only", "stand-in"):
        where = importlib.util.find_spec("detectron2").origin if state else "-"
        print(f"detectron2: {state or 'not installed'} ({where})")
        if state == "python-only":
            print("note: this detectron2 has no compiled _C; it is used as it is")
        return 0 if state else 1

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(tmp)
        pure = rebuild_as_pure_python(wheel, tmp)
        subprocess.run([sys.executable, "-m", "pip", "install", "--force-reinstall", "--no-deps", str(pure)],
                       check=True)
        # Its declared dependencies (omegaconf, hydra-core, yacs, ...) without touching what is installed.
        subprocess.run([sys.executable, "-m", "pip", "install", str(pure), *EXTRA_REQUIREMENTS], check=True)
    print(f"detectron2: installed FAIR's Python code from {WHEEL_REQUIREMENT} with the stand-in _C")
    return 0


if __name__ == "__main__":
    sys.exit(main())
