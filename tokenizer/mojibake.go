package tokenizer

func fixEncoding(text string) string { return text }
