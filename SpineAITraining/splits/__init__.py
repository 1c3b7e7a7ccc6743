"""Fixed train / validation / test splits by case, committed so every run and report uses the same ones."""
