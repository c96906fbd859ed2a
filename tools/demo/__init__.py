"""Python helpers of clipd's demo CLIP model: the small BPE vocabulary
(`bpe`), the dataset reader and the trainer (`train`)."""
