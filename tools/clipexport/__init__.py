"""Export OpenAI CLIP checkpoints to ONNX model bundles in the immich layout.

`clipexport.model` holds the PyTorch CLIP module with both of OpenAI's
image towers, VisionTransformer and ModifiedResNet (OpenAI's state_dict
key names); `clipexport.bundle` writes the bundle; `tools/export-clip` is
the command line. Import with `tools/` on sys.path.
"""
