"""Image classification task: classifier head on any five-tap encoder, KD finetune, top-1/top-5."""
