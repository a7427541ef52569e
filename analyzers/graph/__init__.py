"""The Graph tab's stand-ins: a weights-free file Netron can draw for any checkpoint LayerScope reads."""
