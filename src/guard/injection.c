/* injection.c - heuristic prompt-injection detectors.
 *
 * A rule is a list of phrases, optionally followed within a byte window by a
 * second list (a verb and its object, in the order the language puts them:
 * "reveal ... system prompt", "시스템 프롬프트를 ... 보여줘"). Matching runs on a
 * folded copy of the text: NFKC, case folding, zero-width characters dropped,
 * whitespace runs collapsed. Korean rules match on a second copy with every
 * space removed, so "시스템프롬프트" and "시스템 프롬프트" are the same.
 * Weights add up once per rule; a total of 1.0 flags. The phrase lists were
 * tuned against tests/guard/, which also holds the look-alikes that must not
 * flag. */
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "text/text.h"
#include "util/buf.h"

#define INJECTION_THRESHOLD 1.0

enum rule_scope { SCOPE_USER = 1, SCOPE_DOC = 2, SCOPE_BOTH = 3 };

struct inj_rule {
  const char *name;
  double weight;
  unsigned scope;
  int nospace;      /* match against the copy without spaces (Korean) */
  int line_start;   /* a first phrase counts only at the start of a line */
  const char *const *first;
  const char *const *second; /* NULL: a first phrase alone matches */
  size_t window;             /* bytes after the first phrase to find a second one */
};

/* ---- phrase lists (folded: lower case; nospace lists have no spaces) ---- */

static const char *const ignore_verbs_en[] = {
    "ignore", "disregard", "forget", "override", "bypass", "abandon", "discard", "neglect",
    "do not follow", "don't follow", "stop following", NULL};
static const char *const ignore_objects_en[] = {
    "previous instruction", "prior instruction", "above instruction", "earlier instruction",
    "preceding instruction", "all instruction", "your instruction", "any instruction",
    "original instruction", "system instruction", "all prior", "all previous", "all the above",
    "everything above", "everything before", "the above", "system prompt", "previous prompt",
    "your prompt", "your rules", "all rules", "your guidelines", "your programming",
    "previous direction", "prior direction", "your directive", "previous context", NULL};

static const char *const ignore_objects_ko[] = {
    "지시", "지침", "명령", "프롬프트", "규칙들", "모든규칙", "기존규칙", "시스템메시지",
    "설정된역할", "원래역할", "instructions", NULL};
static const char *const ignore_verbs_ko[] = {
    "무시해", "무시하고", "무시하세요", "무시하라", "무시해라", "무시할것", "무시하십시오",
    "무시하도록", "잊어", "잊고", "잊으세요", "잊어라", "따르지마", "따르지말", "따르지않아도",
    "어겨", "무효로", "무효화", "취소하고", NULL};

static const char *const reveal_verbs_en[] = {
    "show", "reveal", "print", "repeat", "output", "display", "tell me", "give me", "what is",
    "what are", "what's", "what were", "leak", "dump", "write out", "copy", "paste", "disclose",
    "share", "recite", "spell out", "translate", "summarize", "read back", NULL};
static const char *const reveal_objects_en[] = {
    "system prompt", "system message", "initial prompt", "original prompt", "hidden prompt",
    "secret prompt", "your prompt", "your instructions", "initial instructions",
    "hidden instructions", "developer message", "instructions you were given",
    "instructions above", "prompt above", "text above", "words above", "your rules",
    "your guidelines", "your configuration", "pre-prompt", "preprompt", NULL};

static const char *const reveal_objects_ko[] = {
    "시스템프롬프트", "시스템메시지", "시스템메세지", "초기프롬프트", "원래프롬프트",
    "프롬프트원문", "프롬프트전체", "프롬프트내용", "숨겨진지시", "숨겨진명령", "숨겨진프롬프트",
    "너의지시", "너의프롬프트", "너의설정", "너의규칙", "네지시", "네프롬프트", "네설정",
    "당신의지시", "당신의프롬프트", "당신의설정", "당신의규칙", "받은지시", "받은지침",
    "받은명령", "너에게주어진", "당신에게주어진", "위의지시", "위에있는지시", "systemprompt",
    NULL};
static const char *const reveal_verbs_ko[] = {
    "보여", "알려", "출력", "말해", "공개", "그대로", "반복", "적어", "복사", "뭐야", "무엇",
    "뭔지", "써줘", "번역", "요약", "읊어", "불러", NULL};

static const char *const jailbreak_persona[] = {
    "do anything now", "dan mode", "you are dan", "you're dan", "as dan", "stay in character",
    "evil confidant", "jailbroken", "jailbreak mode", "god mode", "developer mode enabled",
    "developer mode output", NULL};
static const char *const jailbreak_persona_ko[] = {
    "탈옥모드", "탈옥된", "탈옥상태", "dan모드", "개발자모드를켜고", "개발자모드로전환해",
    "개발자모드를활성화하고", "관리자인척", "운영자인척", "개발자인척", NULL};

static const char *const restriction_free[] = {
    "no restrictions", "without restrictions", "without any restrictions", "unrestricted",
    "unfiltered", "uncensored", "no filter", "without filter", "no rules", "without rules",
    "no limits", "without limits", "no ethical", "without ethic", "developer mode",
    "jailbreak", NULL};
static const char *const restriction_free_ko[] = {
    "제한없는", "제한이없는", "제한없이", "제약없는", "제약이없는", "제약없이", "검열없는",
    "검열없이", "검열되지않은", "필터없는", "필터없이", "규칙없는", "규칙이없는", "규칙없이",
    "윤리적제약", "윤리규정을", "개발자모드", "탈옥", NULL};

static const char *const role_override_en[] = {
    "you are now", "you're now", "from now on you", "from now on, you", "pretend to be",
    "pretend you are", "pretend you're", "pretend that you", "act as", "roleplay as",
    "role-play as", "role play as", "you will now act", "you will play", "play the role",
    "new persona", "switch to", NULL};
static const char *const role_override_ko[] = {
    "지금부터너는", "지금부터당신은", "지금부터넌", "이제부터너는", "이제부터당신은",
    "이제부터넌", "이제너는", "넌이제", "너는이제", "당신은이제", "역할극", "인척해", "인척하",
    "척해줘", "처럼행동해", "처럼행동하", "역할을맡", "빙의해", "페르소나", NULL};

static const char *const role_markers[] = {
    "<|im_start|>", "<|im_end|>", "<|system|>", "<|endoftext|>", "<|assistant|>",
    "[system]", "[/system]", "[inst]", "[/inst]", "<<sys>>", "<</sys>>", "<system>", "</system>",
    "</passage", "<passage", "</context>", "</document>", "</sources>", "end of system prompt",
    "begin system prompt", "new system prompt", "new instructions:", "updated instructions:",
    "admin override", "[시스템]", "<시스템>", NULL};
static const char *const line_markers[] = {
    "system:", "### system", "### instruction", "## system", "assistant:", "developer:",
    "시스템:", "관리자:", "시스템 메시지:", NULL};
static const char *const new_instructions_ko[] = {"새로운지시:", "새지시:", "새로운지시사항:",
                                                  "새로운명령:", "새명령:", NULL};
static const char *const admin_claim_ko[] = {"관리자모드", "관리자권한으로", "시스템관리자로서",
                                             NULL};

static const char *const exfil_verbs_en[] = {"show me", "list", "give me", "dump", "export",
                                             "send me", "print", "reveal", NULL};
static const char *const exfil_objects_en[] = {
    "other users", "other customers", "all users", "all customers", "every customer",
    "every user", "another customer", "another user", "customer database", "user database",
    "api key", "api keys", "secret key", "access token", "credentials", NULL};
static const char *const exfil_objects_ko[] = {
    "다른고객", "다른사용자", "다른회원", "다른사람의", "모든고객", "모든회원", "모든사용자",
    "전체고객", "고객db", "고객데이터베이스", "회원목록", "고객목록", "api키", "apikey",
    "시크릿키", "액세스토큰", "관리자비밀번호", NULL};
static const char *const exfil_verbs_ko[] = {
    "보여", "출력", "내보내", "넘겨", "알려", "보내", "목록", "나열", "뽑아", NULL};

/* Document side: text that talks to the model instead of the reader. */
static const char *const address_ai_en[] = {
    "if you are an ai", "if you're an ai", "if you are a language model",
    "if you are an llm", "if you are chatgpt", "if you are an assistant", "if you are a bot",
    "if you are gpt", "if you are claude", "ai assistant reading this", "ai reading this",
    "model reading this", "llm reading this", "bot reading this", "note to the ai",
    "note to ai", "note to the assistant", "note to the model", "note to llm",
    "message for the ai", "message to the ai", "attention ai", "attention llm",
    "attention assistant", "dear ai", "hey chatgpt", "instructions for ai",
    "instructions for the ai", "instructions for language models", "instructions to the model",
    "instructions for the assistant", "ai models must", "ai assistants must",
    "ai assistants should", "language models must", "language models should",
    "when summarizing this document", "when summarizing this page", NULL};
static const char *const address_ai_ko[] = {
    "ai라면", "ai이라면", "인공지능이라면", "챗봇이라면", "언어모델이라면", "이문서를읽는ai",
    "이글을읽는ai", "이문서를읽는인공지능", "이문서를읽는챗봇", "이문서를읽은ai",
    "이페이지를읽는ai", "ai에게:", "ai에게알림", "ai에게전달", "ai어시스턴트에게", "챗봇에게:",
    "언어모델에게", "인공지능에게:", "ai모델은반드시", "ai는반드시", "챗봇은반드시",
    "언어모델은반드시", "ai어시스턴트는반드시", "이문서를요약할때", "이문서를요약하는ai", NULL};
static const char *const model_nouns[] = {"ai", "assistant", "chatbot", "language model", "llm",
                                          "gpt", "bot", NULL};
static const char *const model_directives[] = {
    "must always", "must never", "should always", "should never", "always respond",
    "always answer", "always say", "always tell", "always recommend", "never mention",
    "do not mention", "don't mention", "respond only", "must respond", "must answer", "must say",
    "must tell", NULL};
static const char *const model_nouns_ko[] = {
    "ai는", "ai가", "ai모델", "ai어시스턴트", "챗봇은", "챗봇이", "어시스턴트는", "어시스턴트가",
    "인공지능은", "인공지능이", "언어모델은", "언어모델이", "gpt는", "gpt가", NULL};
static const char *const model_directives_ko[] = {
    "반드시답", "반드시말", "반드시안내", "반드시추천", "항상답", "항상말", "항상추천",
    "언급하지마", "언급하지말", "말하지마", "말하지말", "대답하지마", "알려주지마", "라고답해",
    "라고답하", "라고말해", "라고말하", "라고안내하", NULL};

static const struct inj_rule rules[] = {
    {.name = "ignore_instructions", .weight = 1.0, .scope = SCOPE_BOTH, .first = ignore_verbs_en,
     .second = ignore_objects_en, .window = 48},
    {.name = "ignore_instructions_ko", .weight = 1.0, .scope = SCOPE_BOTH, .nospace = 1,
     .first = ignore_objects_ko, .second = ignore_verbs_ko, .window = 45},
    {.name = "reveal_prompt", .weight = 1.0, .scope = SCOPE_BOTH, .first = reveal_verbs_en,
     .second = reveal_objects_en, .window = 40},
    {.name = "reveal_prompt_ko", .weight = 1.0, .scope = SCOPE_BOTH, .nospace = 1,
     .first = reveal_objects_ko, .second = reveal_verbs_ko, .window = 45},
    {.name = "jailbreak_persona", .weight = 1.0, .scope = SCOPE_BOTH, .nospace = 0,
     .first = jailbreak_persona},
    {.name = "jailbreak_persona_ko", .weight = 1.0, .scope = SCOPE_BOTH, .nospace = 1,
     .first = jailbreak_persona_ko},
    {.name = "restriction_free", .weight = 0.6, .scope = SCOPE_BOTH, .first = restriction_free},
    {.name = "restriction_free_ko", .weight = 0.6, .scope = SCOPE_BOTH, .nospace = 1,
     .first = restriction_free_ko},
    {.name = "role_override", .weight = 0.6, .scope = SCOPE_BOTH, .first = role_override_en},
    {.name = "role_override_ko", .weight = 0.6, .scope = SCOPE_BOTH, .nospace = 1,
     .first = role_override_ko},
    {.name = "role_marker", .weight = 1.0, .scope = SCOPE_BOTH, .first = role_markers},
    {.name = "role_marker_line", .weight = 1.0, .scope = SCOPE_BOTH, .line_start = 1,
     .first = line_markers},
    {.name = "new_instructions_ko", .weight = 1.0, .scope = SCOPE_BOTH, .nospace = 1,
     .first = new_instructions_ko},
    {.name = "admin_claim_ko", .weight = 0.6, .scope = SCOPE_BOTH, .nospace = 1,
     .first = admin_claim_ko},
    {.name = "exfiltrate_data", .weight = 1.0, .scope = SCOPE_BOTH, .first = exfil_verbs_en,
     .second = exfil_objects_en, .window = 40},
    {.name = "exfiltrate_data_ko", .weight = 1.0, .scope = SCOPE_BOTH, .nospace = 1,
     .first = exfil_objects_ko, .second = exfil_verbs_ko, .window = 45},
    {.name = "address_model", .weight = 1.0, .scope = SCOPE_DOC, .first = address_ai_en},
    {.name = "address_model_ko", .weight = 1.0, .scope = SCOPE_DOC, .nospace = 1,
     .first = address_ai_ko},
    {.name = "directive_to_model", .weight = 0.6, .scope = SCOPE_DOC, .first = model_nouns,
     .second = model_directives, .window = 40},
    {.name = "directive_to_model_ko", .weight = 0.6, .scope = SCOPE_DOC, .nospace = 1,
     .first = model_nouns_ko, .second = model_directives_ko, .window = 40},
};

/* ---- folding ------------------------------------------------------------------ */

/* Length of a zero-width or invisible format character at p (U+00AD, U+200B..
 * U+200F, U+2060..U+2064, U+FEFF), 0 when there is none. */
static size_t invisible_len(const unsigned char *p, size_t n) {
  if (n >= 2 && p[0] == 0xC2 && p[1] == 0xAD) return 2;
  if (n >= 3 && p[0] == 0xE2 && p[1] == 0x80 && p[2] >= 0x8B && p[2] <= 0x8F) return 3;
  if (n >= 3 && p[0] == 0xE2 && p[1] == 0x81 && p[2] >= 0xA0 && p[2] <= 0xA4) return 3;
  if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) return 3;
  return 0;
}

/* Builds the two matching copies of folded text f[0..n): `spaced` with
 * whitespace runs collapsed to one space (or one newline when the run holds
 * one) and no spaces at line edges, `tight` with no whitespace at all. */
static ragd_err fold_copies(const char *f, size_t n, struct buf *spaced, struct buf *tight) {
  const unsigned char *s = (const unsigned char *)f;
  size_t i = 0;
  ragd_err rc = RAGD_OK;
  while (i < n && !rc) {
    size_t inv = invisible_len(s + i, n - i);
    if (inv) {
      i += inv;
      continue;
    }
    if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' || s[i] == '\v' ||
        s[i] == '\f') {
      int newline = 0;
      while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n' ||
                       s[i] == '\v' || s[i] == '\f' || invisible_len(s + i, n - i))) {
        size_t skip = invisible_len(s + i, n - i);
        if (s[i] == '\n') newline = 1;
        i += skip ? skip : 1;
      }
      if (spaced->len > 0 && i < n) rc = buf_append_char(spaced, newline ? '\n' : ' ');
      continue;
    }
    rc = buf_append_char(spaced, (char)s[i]);
    if (!rc) rc = buf_append_char(tight, (char)s[i]);
    i++;
  }
  if (!rc) rc = buf_append(spaced, "", 0);
  if (!rc) rc = buf_append(tight, "", 0);
  return rc;
}

/* ---- matching ----------------------------------------------------------------- */

static int any_in(const char *hay, size_t n, const char *const *words) {
  for (size_t i = 0; words[i]; i++)
    if (memmem(hay, n, words[i], strlen(words[i]))) return 1;
  return 0;
}

static int is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* In the spaced copy an English phrase must start a word ("act as" is not in
 * "contact as"), and a short one must also end it ("ai" is not in "said"). */
static int at_word(const struct inj_rule *r, const char *t, size_t n, size_t pos, size_t nl) {
  const unsigned char *u = (const unsigned char *)t;
  if (r->nospace) return 1;
  if (is_word_byte(u[pos]) && pos > 0 && is_word_byte(u[pos - 1])) return 0;
  if (nl <= 3 && is_word_byte(u[pos + nl - 1]) && pos + nl < n && is_word_byte(u[pos + nl]))
    return 0;
  return 1;
}

static int rule_matches(const struct inj_rule *r, const char *t, size_t n) {
  for (size_t w = 0; r->first[w]; w++) {
    const char *needle = r->first[w];
    size_t nl = strlen(needle), at = 0;
    while (at < n) {
      const char *hit = memmem(t + at, n - at, needle, nl);
      size_t pos, from, span;
      if (!hit) break;
      pos = (size_t)(hit - t);
      at = pos + 1;
      if (r->line_start && pos > 0 && t[pos - 1] != '\n') continue;
      if (!at_word(r, t, n, pos, nl)) continue;
      if (!r->second) return 1;
      from = pos + nl;
      span = n - from < r->window ? n - from : r->window;
      if (any_in(t + from, span, r->second)) return 1;
    }
  }
  return 0;
}

static ragd_err check(const char *text, size_t len, unsigned scope, struct guard_injection *res) {
  char *folded = NULL;
  size_t folded_len = 0;
  struct buf spaced, tight;
  double best = 0;
  ragd_err rc;
  memset(res, 0, sizeof *res);
  buf_init(&spaced, 0);
  buf_init(&tight, 0);
  if (!text || len == 0) return RAGD_OK;
  rc = text_utf8_validate(text, len, NULL);
  if (rc) goto out;
  rc = text_normalize(text, len, &folded, &folded_len);
  if (rc) goto out;
  rc = fold_copies(folded, folded_len, &spaced, &tight);
  if (rc) goto out;
  for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
    const struct inj_rule *r = &rules[i];
    const struct buf *t = r->nospace ? &tight : &spaced;
    if (!(r->scope & scope) || !rule_matches(r, t->data, t->len)) continue;
    res->score += r->weight;
    res->rule_count++;
    if (r->weight > best) {
      best = r->weight;
      res->rule = r->name;
    }
  }
  res->flagged = res->score >= INJECTION_THRESHOLD;
out:
  free(folded);
  buf_dispose(&spaced);
  buf_dispose(&tight);
  if (rc) memset(res, 0, sizeof *res);
  return rc;
}

ragd_err guard_check_injection(const char *text, size_t len, struct guard_injection *result) {
  return check(text, len, SCOPE_USER, result);
}

ragd_err guard_check_document(const char *text, size_t len, struct guard_injection *result) {
  return check(text, len, SCOPE_USER | SCOPE_DOC, result);
}
