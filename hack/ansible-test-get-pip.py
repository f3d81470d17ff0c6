# Stand-in for the get-pip.py that ansible-test downloads to bootstrap pip in
# its sanity venvs, for machines that reach PyPI but not get-pip.py's download host.
# Bootstraps pip from the interpreter's own ensurepip, then installs what
# get-pip.py was asked for (ansible-test pins the pip version) from PyPI.
import subprocess
import sys

args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
