import importlib


def test_pack_imports_without_comfy():
    pack = importlib.import_module("negguide")
    assert pack.WEB_DIRECTORY == "./js"
    assert callable(pack.comfy_entrypoint)
    pn = importlib.import_module("negguide.guiders.perp_neg")
    assert hasattr(pn, "perp_neg")
