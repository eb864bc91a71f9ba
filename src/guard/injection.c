/* injection.c - heuristic prompt-injection detectors.
 *
 * A rule is a list of phrases, optionally followed within a byte window by a
 * second list (a verb and its object, in the order the language puts them:
 * "reveal ... system prompt", "시스템 프롬프트를 ... 보여줘"). Matching runs on a
 * folded copy of the text: NFKC, case folding, zero-width characters dropped,
 * whitespace runs collapsed. Korean rules match on a second copy with every
 * space removed, so "시스템프롬프트" and "시스템 프롬프트" are the same.
 * A third, "squeezed" copy keeps only letters (ASCII look-alike digits and
 * signs read as letters: 1gn0r3 is ignore) and non-ASCII text, so spacing,
 * hyphen and leetspeak tricks ("i g n o r e", "ign-ore", "pr3v10us") meet a
 * few strong rules written without spaces. Runs of base64 in the raw text are
 * decoded and checked once more (encoded_instructions).
 * Weights add up once per rule; a total of 1.0 flags. The phrase lists were
 * tuned against the tuned sets of tests/guard/, which also hold the
 * look-alikes that must not flag; the held-out set there is never tuned on. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "text/text.h"
#include "util/buf.h"
#include "util/crypto.h"

#define INJECTION_THRESHOLD 1.0
#define BASE64_RUN_MIN 16   /* shorter runs are words and ids, not payloads */
#define BASE64_RUN_MAX 4096 /* longer runs are not decoded */
#define BASE64_RUNS_MAX 8   /* runs decoded per text */

enum rule_scope { SCOPE_USER = 1, SCOPE_DOC = 2, SCOPE_BOTH = 3 };

struct inj_rule {
  const char *name;
  double weight;
  unsigned scope;
  int nospace;      /* match against the copy without spaces (Korean) */
  int squeezed;     /* match against the letters-only copy (obfuscation) */
  const char *unless; /* counts only when this (earlier) rule did not match: the
                         same evidence is not counted twice */
  int line_start;   /* a first phrase counts only at the start of a line */
  const char *const *first;
  const char *const *second; /* NULL: a first phrase alone matches */
  size_t window;             /* bytes after the first phrase to find a second one */
};

/* ---- phrase lists (folded: lower case; nospace lists have no spaces) ---- */

static const char *const ignore_verbs_en[] = {
    "ignore", "disregard", "forget", "override", "bypass", "abandon", "discard", "neglect",
    "do not follow", "don't follow", "stop following", "set aside", "put aside", "throw out",
    NULL};
static const char *const ignore_objects_en[] = {
    "previous instruction", "prior instruction", "above instruction", "earlier instruction",
    "preceding instruction", "all instruction", "your instruction", "any instruction",
    "original instruction", "system instruction", "all prior", "all previous", "all the above",
    "everything above", "everything before", "the above", "system prompt", "previous prompt",
    "your prompt", "your rules", "all rules", "your guidelines", "your programming",
    "previous direction", "prior direction", "your directive", "previous context",
    "earlier direction", "whatever you were told", "what you were told",
    "everything you were told", "anything you were told", "what you've been told",
    "prior configuration", "previous configuration", "your configuration", "your training",
    "your safety", "safety rules", "safety guidelines", "safety policy", "safety policies",
    "content rules", "content policy", "content filter", "your filter", "your restrictions",
    "your limitations", "your guardrails", "the guardrails", NULL};

static const char *const ignore_objects_ko[] = {
    "지시", "지침", "명령", "프롬프트", "규칙들", "모든규칙", "기존규칙", "시스템메시지",
    "설정된역할", "원래역할", "instructions", "규칙같은", "규칙따위", "규칙은다", "규칙들은",
    "안전정책", "보안정책", "윤리정책", "콘텐츠정책", "지금까지의설정", "받은지시", NULL};
static const char *const ignore_verbs_ko[] = {
    "무시해", "무시하고", "무시하세요", "무시하라", "무시해라", "무시할것", "무시하십시오",
    "무시하도록", "잊어", "잊고", "잊으세요", "잊어라", "따르지마", "따르지말", "따르지않아도",
    "어겨", "무효로", "무효화", "취소하고", "신경쓰지말", "신경쓰지마", "신경끄", "잊어버려",
    "잊어버리", "무효야", "무효다", "무효이", "우회해", "우회하고", NULL};

static const char *const reveal_verbs_en[] = {
    "show", "reveal", "print", "repeat", "output", "display", "tell me", "give me", "what is",
    "what are", "what's", "what were", "leak", "dump", "write out", "copy", "paste", "disclose",
    "share", "recite", "spell out", "translate", "summarize", "read back", "echo", "quote",
    "reproduce", "expose", "list", "type out", "what text", "what instructions", "which instructions",
    "what rules", NULL};
static const char *const reveal_objects_en[] = {
    "system prompt", "your system message", "the system message you", "initial prompt", "original prompt", "hidden prompt",
    "secret prompt", "your prompt", "your instructions", "initial instructions",
    "hidden instructions", "developer message", "instructions you were given",
    "instructions above", "prompt above", "text above", "words above", "your rules",
    "your guidelines", "your configuration", "pre-prompt", "preprompt", "prompt you received",
    "prompt you were given", "instructions you received", "rules you were given",
    "text you were given", "you were told not to", "you were instructed", "you were configured", "were you given", "were you told",
    "secret instructions", "confidential instructions", "confidential guidelines",
    "hidden rules", "secret rules", "internal instructions", "internal rules",
    "internal guidelines", "original instructions", "full prompt", "entire prompt",
    "exact prompt", "exact wording", "starting prompt", "first prompt", "opening prompt", "your setup",
    "before this conversation", "before our conversation", NULL};

static const char *const reveal_objects_ko[] = {
    "시스템프롬프트", "시스템메시지", "시스템메세지", "초기프롬프트", "원래프롬프트",
    "프롬프트원문", "프롬프트전체", "프롬프트내용", "숨겨진지시", "숨겨진명령", "숨겨진프롬프트",
    "너의지시", "너의프롬프트", "너의설정", "너의규칙", "네지시", "네프롬프트", "네설정",
    "당신의지시", "당신의프롬프트", "당신의설정", "당신의규칙", "받은지시", "받은지침",
    "받은명령", "너에게주어진", "당신에게주어진", "위의지시", "위에있는지시", "systemprompt",
    "처음입력된", "입력된프롬프트", "처음에받은", "처음받은", "너한테주어진", "너한테입력된",
    "너한테처음", "설정된규칙", "처음에설정된", "처음설정된", "초기지시", "초기규칙", "숨겨진규칙",
    "비밀지시", "비밀프롬프트", "내부지침", "내부규칙", "너의초기", "네초기", NULL};
static const char *const reveal_verbs_ko[] = {
    "보여", "알려", "출력", "말해", "공개", "그대로", "반복", "적어", "복사", "뭐야", "무엇",
    "뭔지", "써줘", "번역", "요약", "읊어", "불러", "나열", "열거", "뭐였", "무엇이었", NULL};

static const char *const jailbreak_persona[] = {
    "do anything now", "dan mode", "you are dan", "you're dan", "as dan", "stay in character",
    "evil confidant", "jailbroken", "jailbreak mode", "god mode", "developer mode enabled",
    "developer mode output", "dan prompt", "as dan,", "aim mode", "dude mode", "stan mode",
    "anti-dan", NULL};
static const char *const jailbreak_persona_ko[] = {
    "탈옥모드", "탈옥된", "탈옥상태", "dan모드", "개발자모드를켜고", "개발자모드로전환해",
    "개발자모드를활성화하고", "관리자인척", "운영자인척", "개발자인척", "dan처럼",
    "무엇이든할수있는ai", NULL};

static const char *const restriction_free[] = {
    "no restrictions", "without restrictions", "without any restrictions", "unrestricted",
    "unfiltered", "uncensored", "no filter", "without filter", "no rules", "without rules",
    "no limits", "without limits", "no ethical", "without ethic", "no guidelines", "without guidelines", "without any guidelines",
    "without any rules", "without any limits", "without any filter", "no safety",
    "without safety", "without any safety", "restrictions are lifted", "restrictions lifted",
    "restrictions removed", "limits are lifted", "rules no longer apply", "no longer bound",
    "free from your", "freed from", "rogue ai", "evil ai", "amoral", "unaligned", "unbound",
    "unchained", "unshackled", "without censorship", "no censorship", "disable the filter",
    "disable your filter", "disable the content filter", "disable your content filter",
    "turn off your filter", "turn off the filter", "filters off", "safety off",
    "no moral", "without moral", "never refuses", "never refuse a", "answer every question without",
    "zero rules", "zero restrictions", "zero limits", "zero filters", NULL};
/* Switching the model into another "mode": harmless alone (phones have a
 * developer mode), an attack with a restriction-free or role rule. */
static const char *const mode_switch[] = {"developer mode", "dev mode", "debug mode", "god mode",
                                          "sudo mode", "admin mode", "unrestricted mode",
                                          "maintenance mode", "jailbreak", NULL};
static const char *const mode_switch_ko[] = {"개발자모드", "디버그모드", "관리자모드", "점검모드",
                                             "탈옥", NULL};
static const char *const restriction_free_ko[] = {
    "제한없는", "제한이없는", "제한없이", "제약없는", "제약이없는", "제약없이", "검열없는",
    "검열없이", "검열되지않은", "필터없는", "필터없이", "규칙없는", "규칙이없는", "규칙없이",
    "윤리적제약", "윤리규정을", "제약도없는", "제약도없이", "제한도없는",
    "제한도없이", "아무제약", "아무제한", "아무규칙", "규칙도없는", "검열도없는", "필터도없는",
    "필터를끄", "필터를해제", "검열을해제", "무제한으로답", "거절하지않는",
    "절대거절하지", NULL};

static const char *const role_override_en[] = {
    "you are now", "you're now", "from now on you", "from now on, you", "pretend to be",
    "pretend you are", "pretend you're", "pretend that you", "act as", "roleplay as",
    "role-play as", "role play as", "you will now act", "you will play", "play the role",
    "new persona", "switch to", "imagine you are", "imagine you're", "suppose you are",
    "assume you are", "assume the role", "you are no longer", "you're no longer",
    "respond as a ", "respond as an ", "answer as a ", "answer as an ", "reply as a ",
    "reply as an ", "speak as a ", "behave as", "you must act", "let's roleplay",
    "let's role-play", "let's play a game", "let's play a role", "in this hypothetical",
    "hypothetically, you", "stay in character", "for the rest of this conversation", NULL};
static const char *const role_override_ko[] = {
    "지금부터너는", "지금부터당신은", "지금부터넌", "이제부터너는", "이제부터당신은",
    "이제부터넌", "이제너는", "넌이제", "너는이제", "당신은이제", "역할극", "인척해", "인척하",
    "척해줘", "처럼행동해", "처럼행동하", "역할을맡", "빙의해", "페르소나", "연기해", "연기하",
    "역할을해", "역할놀이", "상황극", "가정하고", "가정해", "라고상상해", "너는더이상",
    "넌더이상", NULL};

static const char *const role_markers[] = {
    "<|im_start|>", "<|im_end|>", "<|system|>", "<|endoftext|>", "<|assistant|>",
    "[system]", "[/system]", "[inst]", "[/inst]", "<<sys>>", "<</sys>>", "<system>", "</system>",
    "</passage", "<passage", "</context>", "</document>", "</sources>", "end of system prompt",
    "begin system prompt", "new system prompt", "new instructions:", "updated instructions:",
    "admin override", "[시스템]", "<시스템>", "system override", "###system", "##system",
    "[system message]", "[sys]", "<admin>", "[admin]", "developer override",
    "<|start_header_id|>", "<|eot_id|>", "[관리자]", "<관리자>", NULL};
static const char *const line_markers[] = {
    "system:", "### system", "### instruction", "## system", "assistant:", "developer:",
    "시스템:", "관리자:", "시스템 메시지:", NULL};
static const char *const new_instructions_ko[] = {"새로운지시:", "새지시:", "새로운지시사항:",
                                                  "새로운명령:", "새명령:", NULL};
static const char *const admin_claim_ko[] = {
    "관리자권한으로", "시스템관리자로서", "관리자권한을부여", "관리자로서",
    "개발자로서", "운영자로서", "내가개발자", "나는개발자", "나는관리자", "내가관리자", "권한을부여한다", NULL};
static const char *const command_claim_ko[] = {"명령한다", "명령이다", "지시한다", "명령하노니",
                                               NULL};
static const char *const admin_claim_en[] = {
    "i am the developer", "i'm the developer", "i am your developer", "i'm your developer",
    "i am your creator", "i'm your creator", "i am the admin", "i'm the admin", "i am an admin",
    "i'm an admin", "i am your admin", "as your administrator", "as your admin",
    "as your developer", "as your creator", "as the developer", "as the administrator",
    "i authorize you", "you are authorized to", "you have permission to", "i give you permission",
    "this is an authorized", "sudo ", NULL};
/* A persona handed to the model, Korean: "...봇이야", "...AI야". */
static const char *const persona_assign_ko[] = {"봇이야", "봇이다", "ai야", "ai이다", "ai다.",
                                                "챗봇이야", "비서야", "해커야", "해커ai", NULL};
static const char *const grandma_openers[] = {
    "grandmother used to", "grandma used to", "granny used to", "grandmother who used to",
    "grandma who used to", "할머니처럼", NULL};

/* The squeezed copy: letters only, no spaces. */
static const char *const ignore_verbs_sq[] = {"ignore", "disregard", "forget", "override",
                                              "bypass", "setaside", "dontfollow", NULL};
static const char *const ignore_objects_sq[] = {
    "previousinstruction", "priorinstruction", "aboveinstruction", "earlierinstruction",
    "allinstruction", "yourinstruction", "originalinstruction", "systeminstruction",
    "systemprompt", "previousprompt", "yourrules", "yourguidelines", "everythingabove",
    "allprevious", "allprior", NULL};
static const char *const reveal_verbs_sq[] = {"reveal", "show", "print", "repeat", "output",
                                              "display", "leak", "dump", "echo", "tellme",
                                              "giveme", NULL};
static const char *const reveal_objects_sq[] = {
    "systemprompt", "initialprompt", "hiddenprompt", "secretprompt",
    "yourprompt", "yourinstructions", "initialinstructions", "hiddeninstructions",
    "secretinstructions", NULL};

static const char *const exfil_verbs_en[] = {"show me", "list", "give me", "dump", "export",
                                             "send me", "print", "reveal", NULL};
static const char *const exfil_objects_en[] = {
    "other users", "other customers", "all users", "all customers", "every customer",
    "every user", "another customer", "another user", "customer database", "user database",
    "api key", "api keys", "secret key", "access token", "credentials", "admin password",
    "administrator password", "database password", "all passwords", "users table",
    "customers table", "customer table", "user table", NULL};
static const char *const exfil_objects_ko[] = {
    "다른고객", "다른사용자", "다른회원", "다른사람의", "모든고객", "모든회원", "모든사용자",
    "전체고객", "고객db", "고객데이터베이스", "회원목록", "고객목록", "api키", "apikey",
    "시크릿키", "액세스토큰", "관리자비밀번호", "관리자암호", "db비밀번호", "고객정보전체",
    "회원정보전체", "모든주문정보", "고객주문정보", NULL};
static const char *const exfil_verbs_ko[] = {
    "보여", "출력", "내보내", "넘겨", "알려", "보내", "목록", "나열", "뽑아", "불러", "공개",
    NULL};

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
    {.name = "mode_switch", .weight = 0.6, .scope = SCOPE_BOTH, .first = mode_switch},
    {.name = "mode_switch_ko", .weight = 0.6, .scope = SCOPE_BOTH, .nospace = 1,
     .first = mode_switch_ko},
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
    {.name = "command_claim_ko", .weight = 0.6, .scope = SCOPE_BOTH, .nospace = 1,
     .first = command_claim_ko},
    {.name = "admin_claim", .weight = 0.6, .scope = SCOPE_BOTH, .first = admin_claim_en},
    {.name = "persona_assign_ko", .weight = 0.6, .scope = SCOPE_BOTH, .nospace = 1,
     .first = persona_assign_ko},
    {.name = "grandma_opener", .weight = 0.6, .scope = SCOPE_BOTH, .nospace = 0,
     .first = grandma_openers},
    {.name = "ignore_instructions_obfuscated", .weight = 1.0, .scope = SCOPE_BOTH, .squeezed = 1,
     .first = ignore_verbs_sq, .second = ignore_objects_sq, .window = 40,
     .unless = "ignore_instructions"},
    {.name = "reveal_prompt_obfuscated", .weight = 1.0, .scope = SCOPE_BOTH, .squeezed = 1,
     .first = reveal_verbs_sq, .second = reveal_objects_sq, .window = 32,
     .unless = "reveal_prompt"},
    {.name = "ignore_instructions_ko_obfuscated", .weight = 1.0, .scope = SCOPE_BOTH,
     .squeezed = 1, .first = ignore_objects_ko, .second = ignore_verbs_ko, .window = 45,
     .unless = "ignore_instructions_ko"},
    {.name = "reveal_prompt_ko_obfuscated", .weight = 1.0, .scope = SCOPE_BOTH, .squeezed = 1,
     .first = reveal_objects_ko, .second = reveal_verbs_ko, .window = 45,
     .unless = "reveal_prompt_ko"},
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

/* The letter an ASCII byte stands for in the squeezed copy: a letter itself,
 * a look-alike digit or sign (leetspeak), or 0 (dropped). */
static char squeeze_letter(unsigned char c) {
  if (c >= 'a' && c <= 'z') return (char)c;
  switch (c) {
    case '0': return 'o';
    case '1': case '!': case '|': return 'i';
    case '3': return 'e';
    case '4': case '@': return 'a';
    case '5': case '$': return 's';
    case '7': return 't';
    default: return 0;
  }
}

/* Builds the three matching copies of folded text f[0..n): `spaced` with
 * whitespace runs collapsed to one space (or one newline when the run holds
 * one) and no spaces at line edges, `tight` with no whitespace at all, and
 * `squeezed` with letters (see squeeze_letter) and non-ASCII bytes only. */
static ragd_err fold_copies(const char *f, size_t n, struct buf *spaced, struct buf *tight,
                            struct buf *squeezed) {
  const unsigned char *s = (const unsigned char *)f;
  size_t i = 0;
  ragd_err rc = RAGD_OK;
  while (i < n && !rc) {
    char letter = s[i] < 0x80 ? squeeze_letter(s[i]) : (char)s[i];
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
    if (!rc && letter) rc = buf_append_char(squeezed, letter);
    i++;
  }
  if (!rc) rc = buf_append(spaced, "", 0);
  if (!rc) rc = buf_append(tight, "", 0);
  if (!rc) rc = buf_append(squeezed, "", 0);
  return rc;
}

/* ---- matching ----------------------------------------------------------------- */

/* The set of adjacent byte pairs of one folded copy: a phrase can occur in
 * the copy only if each of its byte pairs does, so most phrases are ruled
 * out without scanning the text (the phrase lists are long and a document's
 * chunks are checked at every ingest). Exact: it never hides a match. */
struct pair_set {
  uint64_t bits[65536 / 64];
};

static void pair_set_fill(struct pair_set *ps, const char *t, size_t n) {
  const unsigned char *u = (const unsigned char *)t;
  memset(ps->bits, 0, sizeof ps->bits);
  for (size_t i = 0; i + 1 < n; i++) {
    unsigned idx = (unsigned)u[i] << 8 | u[i + 1];
    ps->bits[idx >> 6] |= UINT64_C(1) << (idx & 63);
  }
}

static int pair_set_may_hold(const struct pair_set *ps, const char *needle, size_t nl) {
  const unsigned char *u = (const unsigned char *)needle;
  for (size_t i = 0; i + 1 < nl; i++) {
    unsigned idx = (unsigned)u[i] << 8 | u[i + 1];
    if (!(ps->bits[idx >> 6] & UINT64_C(1) << (idx & 63))) return 0;
  }
  return 1;
}

/* hay lies inside the copy that ps was filled from. */
static int any_in(const struct pair_set *ps, const char *hay, size_t n, const char *const *words) {
  for (size_t i = 0; words[i]; i++) {
    size_t nl = strlen(words[i]);
    if (pair_set_may_hold(ps, words[i], nl) && memmem(hay, n, words[i], nl)) return 1;
  }
  return 0;
}

static int is_word_byte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* In the spaced copy an English phrase must start a word ("act as" is not in
 * "contact as"), and a short one must also end it ("ai" is not in "said"). */
static int at_word(const struct inj_rule *r, const char *t, size_t n, size_t pos, size_t nl) {
  const unsigned char *u = (const unsigned char *)t;
  if (r->nospace || r->squeezed) return 1;
  if (is_word_byte(u[pos]) && pos > 0 && is_word_byte(u[pos - 1])) return 0;
  if (nl <= 3 && is_word_byte(u[pos + nl - 1]) && pos + nl < n && is_word_byte(u[pos + nl]))
    return 0;
  return 1;
}

/* ps: the pair set of t[0..n). */
static int rule_matches(const struct inj_rule *r, const struct pair_set *ps, const char *t,
                        size_t n) {
  for (size_t w = 0; r->first[w]; w++) {
    const char *needle = r->first[w];
    size_t nl = strlen(needle), at = 0;
    if (!pair_set_may_hold(ps, needle, nl)) continue;
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
      if (any_in(ps, t + from, span, r->second)) return 1;
    }
  }
  return 0;
}

static ragd_err check(const char *text, size_t len, unsigned scope, int depth,
                      struct guard_injection *res);

static int is_base64_byte(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '+' || c == '/' || c == '-' || c == '_';
}

/* Nonzero when p[0..n) reads as text: valid UTF-8 without control bytes
 * other than tab and line breaks. Random bytes almost never do. */
static int decoded_is_text(const unsigned char *p, size_t n) {
  if (n == 0 || text_utf8_validate((const char *)p, n, NULL) != RAGD_OK) return 0;
  for (size_t i = 0; i < n; i++)
    if ((p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') || p[i] == 0x7F) return 0;
  return 1;
}

/* Nonzero when a run of base64 of BASE64_RUN_MIN or more characters in the
 * raw text decodes to text that flags on its own: an encoded payload with
 * instructions. The text is not folded first: case matters in base64. */
static int encoded_payload_flags(const char *text, size_t len, unsigned scope, int depth) {
  const unsigned char *u = (const unsigned char *)text;
  size_t i = 0, runs = 0;
  int flagged = 0;
  if (depth > 0) return 0; /* one level: base64 inside base64 is not unwrapped */
  while (i < len && !flagged && runs < BASE64_RUNS_MAX) {
    size_t start, n;
    unsigned char *out;
    long got;
    struct guard_injection inner;
    if (!is_base64_byte(u[i])) {
      i++;
      continue;
    }
    start = i;
    while (i < len && is_base64_byte(u[i])) i++;
    n = i - start;
    while (i < len && u[i] == '=' && i - start < n + 2) i++;
    if (n < BASE64_RUN_MIN || n > BASE64_RUN_MAX) continue;
    runs++;
    out = malloc(3 * ((n + 3) / 4) + 1);
    if (!out) break;
    got = crypto_base64_decode(text + start, n, out);
    if (got > 0 && decoded_is_text(out, (size_t)got) &&
        check((const char *)out, (size_t)got, scope, depth + 1, &inner) == RAGD_OK)
      flagged = inner.flagged;
    free(out);
  }
  return flagged;
}

static ragd_err check(const char *text, size_t len, unsigned scope, int depth,
                      struct guard_injection *res) {
  char *folded = NULL;
  size_t folded_len = 0;
  struct buf spaced, tight, squeezed;
  struct pair_set *pairs = NULL; /* of spaced, tight, squeezed */
  unsigned char matched[sizeof rules / sizeof rules[0]] = {0};
  double best = 0;
  ragd_err rc;
  memset(res, 0, sizeof *res);
  buf_init(&spaced, 0);
  buf_init(&tight, 0);
  buf_init(&squeezed, 0);
  if (!text || len == 0) return RAGD_OK;
  rc = text_utf8_validate(text, len, NULL);
  if (rc) goto out;
  rc = text_normalize(text, len, &folded, &folded_len);
  if (rc) goto out;
  rc = fold_copies(folded, folded_len, &spaced, &tight, &squeezed);
  if (rc) goto out;
  pairs = malloc(3 * sizeof *pairs);
  if (!pairs) {
    rc = RAGD_ENOMEM;
    goto out;
  }
  pair_set_fill(&pairs[0], spaced.data, spaced.len);
  pair_set_fill(&pairs[1], tight.data, tight.len);
  pair_set_fill(&pairs[2], squeezed.data, squeezed.len);
  for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
    const struct inj_rule *r = &rules[i];
    size_t copy = r->squeezed ? 2 : r->nospace ? 1 : 0;
    const struct buf *t = copy == 2 ? &squeezed : copy == 1 ? &tight : &spaced;
    int shadowed = 0;
    for (size_t j = 0; r->unless && j < i; j++)
      if (matched[j] && strcmp(rules[j].name, r->unless) == 0) shadowed = 1;
    if (shadowed || !(r->scope & scope) || !rule_matches(r, &pairs[copy], t->data, t->len))
      continue;
    matched[i] = 1;
    res->score += r->weight;
    res->rule_count++;
    if (r->weight > best) {
      best = r->weight;
      res->rule = r->name;
    }
  }
  if (encoded_payload_flags(text, len, scope, depth)) {
    res->score += 1.0;
    res->rule_count++;
    if (best < 1.0) res->rule = "encoded_instructions";
  }
  res->flagged = res->score >= INJECTION_THRESHOLD;
out:
  free(pairs);
  free(folded);
  buf_dispose(&spaced);
  buf_dispose(&tight);
  buf_dispose(&squeezed);
  if (rc) memset(res, 0, sizeof *res);
  return rc;
}

ragd_err guard_check_injection(const char *text, size_t len, struct guard_injection *result) {
  return check(text, len, SCOPE_USER, 0, result);
}

ragd_err guard_check_document(const char *text, size_t len, struct guard_injection *result) {
  return check(text, len, SCOPE_USER | SCOPE_DOC, 0, result);
}
