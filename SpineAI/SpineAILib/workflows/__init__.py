"""The three workflows (ultrasound, lumbar, cervical), laid out alike; see base.py and registry.py."""
