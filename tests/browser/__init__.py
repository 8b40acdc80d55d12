"""Browser tests of the lessons: JupyterLab in headless Chromium, driven by Playwright."""
