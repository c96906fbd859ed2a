// Package suggest finds the word a user most likely meant, for "did you
// mean" hints in error messages (an unknown config key, a misspelt
// source).
package suggest

// Closest returns the candidate nearest to word by edit distance, if it is
// near enough to be a typo: at most one edit for words of up to four
// letters, two for longer ones. Ties go to the earlier candidate.
func Closest(word string, candidates []string) (string, bool) {
	limit := 2
	if len([]rune(word)) <= 4 {
		limit = 1
	}
	best, bestDist := "", limit+1
	for _, c := range candidates {
		if d := distance(word, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best, bestDist <= limit
}

// distance is the Damerau–Levenshtein distance (adjacent transpositions
// count as one edit, as in "fsp" for "fps").
func distance(a, b string) int {
	s, t := []rune(a), []rune(b)
	prev2 := make([]int, len(t)+1)
	prev := make([]int, len(t)+1)
	cur := make([]int, len(t)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(s); i++ {
		cur[0] = i
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && s[i-1] == t[j-2] && s[i-2] == t[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(t)]
}
