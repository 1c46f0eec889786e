#!/usr/bin/env bash
# Idempotent host set-up: .venv with the pinned tools, mosquitto, umqtt.simple, the aws CLI and the MicroPython stubs.
# With --esp32like, also the esp32like runtime (tools/esp32like.py: MicroPython v1.27.0 built from source,
# 32-bit, which needs gcc-multilib), which the tests and benchmarks run on; built once, then cached.
set -euo pipefail
cd "$(dirname "$0")/.."

esp32like=0
for arg in "$@"; do
    case "$arg" in
        --esp32like) esp32like=1 ;;
        *) echo "usage: setup.sh [--esp32like]" >&2; exit 2 ;;
    esac
done

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv

# Reinstall only when pyproject.toml changes, so a second `make` costs nothing.
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -e .
    rm -f .venv/.installed-*
    touch "$stamp"
fi

# mosquitto is the broker of every test and of the demo; openssl makes the tests' certificates and the
# deploy's DER files; chromium (Debian's, driven by Playwright: no browser download) runs the console's tests.
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ "$esp32like" = 1 ]; then
    # The 32-bit build: make, gcc, and gcc -m32's headers and libraries (Debian's gcc-multilib).
    command -v make >/dev/null 2>&1 || missing+=(make)
    if ! printf 'int main(void) { return 0; }\n' | gcc -m32 -x c - -o /dev/null >/dev/null 2>&1; then
        missing+=(gcc-multilib)
    fi
fi
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: missing ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

.venv/bin/python tools/fetch_umqtt.py build/umqtt

# The aws CLI (v1, from PyPI) pins its own botocore, which must not replace boto3's in .venv: a venv of its own,
# linked as .venv/bin/aws. The tests run the README's aws lines with it against the local service.
awscli=awscli==1.46.3
if [ ! -f "build/awscli/.$awscli" ]; then
    rm -rf build/awscli
    "$python" -m venv build/awscli
    build/awscli/bin/pip install --quiet --disable-pip-version-check "$awscli"
    touch "build/awscli/.$awscli"
fi
ln -sfn ../../build/awscli/bin/aws .venv/bin/aws

stubs=micropython-esp32-stubs==1.29.0.post1
if [ ! -f "build/typings/.$stubs" ]; then
    rm -rf build/typings
    .venv/bin/pip install --quiet --disable-pip-version-check --target build/typings "$stubs"
    touch "build/typings/.$stubs"
fi

if [ "$esp32like" = 1 ]; then
    .venv/bin/python tools/esp32like.py
fi
