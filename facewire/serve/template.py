"""`python -m facewire.serve.template CONFIG_JSON`: the process that forks a supervisor's local workers.

The supervisor starts it with its whole configuration as JSON (see config.py, worker.run_template).
"""

import sys

from facewire.config import Config
from facewire.serve.startup import configure_logging
from facewire.serve.worker import run_template

config = Config.from_json(sys.argv[1])
configure_logging(config.log_level)
run_template(config)
