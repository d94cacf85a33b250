def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise ImportError(f"torchvision stand-in used by NegGuide's tests has no transforms.{name}")
