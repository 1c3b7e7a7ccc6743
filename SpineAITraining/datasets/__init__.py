"""Dataset adapters: each turns a folder of real data into cases and a fixed split by case."""
