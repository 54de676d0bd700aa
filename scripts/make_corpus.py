"""Generate the course corpus, ``mlmcourse/data/corpus.txt``, from hand-written templates.

Every sentence is short, lowercase everyday English, with words and punctuation separated by
single spaces. The templates tie words together (cats sit on mats, chefs season soup, bananas
are yellow, "he" goes with "his") so that the tiny model has real regularities to learn. The
output is deterministic: the same seed writes the same file, byte for byte.

Usage: ``python scripts/make_corpus.py [--n 4000] [--seed 0] [--out mlmcourse/data/corpus.txt]``
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "mlmcourse" / "data" / "corpus.txt"

# The running examples of the book: always in the corpus, in this form.
RUNNING_EXAMPLES = (
    "the cat sat on the mat .",
    "the chef seasoned the soup with salt .",
)

Weighted = dict[str, float]


def pick(rng: random.Random, options: Weighted | list[str] | tuple[str, ...]) -> str:
    """One option; a dict gives each option its weight."""
    if isinstance(options, dict):
        return rng.choices(list(options), weights=list(options.values()))[0]
    return rng.choice(options)


def maybe(rng: random.Random, p: float, text: str) -> str:
    """``text`` with probability ``p``, else the empty string."""
    return text if rng.random() < p else ""


# --- people, and how pronouns agree with them ------------------------------------------------
# subject -> (pronoun, possessive, "was"/"were", third person singular?)
PEOPLE: dict[str, tuple[str, str, str, bool]] = {
    "i": ("i", "my", "was", False),
    "you": ("you", "your", "were", False),
    "we": ("we", "our", "were", False),
    "they": ("they", "their", "were", False),
    "he": ("he", "his", "was", True),
    "she": ("she", "her", "was", True),
    "the boy": ("he", "his", "was", True),
    "the girl": ("she", "her", "was", True),
    "the man": ("he", "his", "was", True),
    "the woman": ("she", "her", "was", True),
    "my brother": ("he", "his", "was", True),
    "my sister": ("she", "her", "was", True),
    "my father": ("he", "his", "was", True),
    "my mother": ("she", "her", "was", True),
    "the children": ("they", "their", "were", False),
    "my friends": ("they", "their", "were", False),
}

# --- animals resting on their usual places ---------------------------------------------------
ANIMAL_PLACES: dict[str, Weighted] = {
    "cat": {"mat": 0.82, "sofa": 0.06, "bed": 0.06, "windowsill": 0.06},
    "kitten": {"mat": 0.6, "cushion": 0.4},
    "dog": {"rug": 0.75, "porch": 0.15, "grass": 0.1},
    "puppy": {"rug": 0.55, "blanket": 0.45},
    "bird": {"branch": 0.8, "roof": 0.1, "fence": 0.1},
    "owl": {"branch": 0.9, "roof": 0.1},
    "hen": {"nest": 0.9, "fence": 0.1},
    "frog": {"log": 0.7, "rock": 0.3},
    "lizard": {"rock": 0.85, "wall": 0.15},
}
ANIMAL_WEIGHTS: Weighted = {
    "cat": 5, "kitten": 1.2, "dog": 2.5, "puppy": 1, "bird": 1.5, "owl": 0.6, "hen": 0.6,
    "frog": 0.8, "lizard": 0.6,
}  # fmt: skip
REST_VERBS: Weighted = {"sat": 5, "slept": 1.5, "lay": 1, "rested": 0.8, "napped": 0.6}
ANIMAL_ADJECTIVES = (
    "small", "big", "old", "young", "black", "white", "grey", "brown", "lazy", "sleepy", "fat",
    "little", "tired", "happy", "fluffy", "hungry",
)  # fmt: skip
DETERMINERS: Weighted = {
    "the": 8, "a": 1, "my": 1, "our": 0.6, "their": 0.4, "her": 0.4, "his": 0.4,
}  # fmt: skip
REST_TAILS: Weighted = {
    "": 6, "by the door": 1, "near the fire": 1, "all day": 1, "in the sun": 1,
    "after dinner": 0.7, "for an hour": 0.7, "all afternoon": 0.7, "again": 0.5,
}  # fmt: skip


def animal_rests(rng: random.Random) -> str:
    animal = pick(rng, ANIMAL_WEIGHTS)
    adjective = maybe(rng, 0.35, pick(rng, ANIMAL_ADJECTIVES))
    place = pick(rng, ANIMAL_PLACES[animal])
    determiner, verb = pick(rng, DETERMINERS), pick(rng, REST_VERBS)
    return f"{determiner} {adjective} {animal} {verb} on the {place} {pick(rng, REST_TAILS)} ."


# --- what animals say and eat ----------------------------------------------------------------
ANIMAL_SOUNDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dog": ("barked", ("at the postman", "at the door", "all night", "in the garden")),
    "cat": ("purred", ("on the mat", "on my lap", "in the sun", "softly")),
    "cow": ("mooed", ("in the field", "in the barn", "at the farmer")),
    "bird": ("sang", ("in the tree", "in the morning", "on the branch")),
    "duck": ("quacked", ("by the pond", "in the water", "at the children")),
    "lion": ("roared", ("at the zoo", "in the jungle", "loudly")),
    "owl": ("hooted", ("at night", "in the dark", "in the tree")),
    "sheep": ("bleated", ("in the field", "on the hill", "in the barn")),
    "horse": ("neighed", ("in the stable", "in the field", "at the farmer")),
    "frog": ("croaked", ("by the pond", "at night", "on the log")),
}
ANIMAL_FOOD: dict[str, tuple[str, tuple[str, ...]]] = {
    "cat": ("drank", ("the milk", "some milk", "the cream")),
    "dog": ("chewed", ("the bone", "a bone", "the stick")),
    "rabbit": ("ate", ("the carrot", "a carrot", "the lettuce")),
    "mouse": ("ate", ("the cheese", "some cheese", "the bread")),
    "horse": ("ate", ("the hay", "some hay", "an apple")),
    "cow": ("ate", ("the grass", "some grass", "the hay")),
    "bird": ("ate", ("the seeds", "some seeds", "a worm")),
    "monkey": ("ate", ("the banana", "a banana", "some fruit")),
    "squirrel": ("ate", ("the nuts", "an acorn", "some nuts")),
    "bear": ("ate", ("the honey", "some honey", "a fish")),
}


def animal_sounds(rng: random.Random) -> str:
    animal = rng.choice(list(ANIMAL_SOUNDS))
    verb, tails = ANIMAL_SOUNDS[animal]
    adjective = maybe(rng, 0.3, pick(rng, ANIMAL_ADJECTIVES))
    return f"the {adjective} {animal} {verb} {rng.choice(tails)} ."


def animal_eats(rng: random.Random) -> str:
    animal = rng.choice(list(ANIMAL_FOOD))
    verb, foods = ANIMAL_FOOD[animal]
    adjective = maybe(rng, 0.3, pick(rng, ANIMAL_ADJECTIVES))
    tail = pick(rng, {"": 3, "in the morning": 1, "after lunch": 1, "in the evening": 1})
    return f"{pick(rng, DETERMINERS)} {adjective} {animal} {verb} {rng.choice(foods)} {tail} ."


# --- people at work --------------------------------------------------------------------------
# job -> (weight, {"verb object": weight})
JOBS: dict[str, tuple[float, Weighted]] = {
    "chef": (5, {
        "seasoned the soup": 6, "stirred the soup": 2, "tasted the soup": 2, "cooked the soup": 1.5,
        "seasoned the stew": 0.6, "chopped the onions": 1, "washed the vegetables": 0.8,
    }),
    "cook": (1.5, {"seasoned the soup": 2, "stirred the soup": 1, "fried the eggs": 1,
                   "boiled the rice": 1}),
    "baker": (2, {"baked the bread": 4, "baked a cake": 2, "baked the cookies": 1,
                  "sold the bread": 1}),
    "teacher": (2, {"wrote on the board": 3, "marked the tests": 2, "read a story": 1,
                    "taught the class": 2}),
    "farmer": (2, {"fed the cows": 3, "milked the cow": 2, "planted the seeds": 2,
                   "drove the tractor": 2}),
    "gardener": (1.5, {"watered the flowers": 3, "cut the grass": 2, "planted the roses": 1}),
    "doctor": (1.5, {"examined the patient": 3, "helped the patient": 2, "read the report": 1}),
    "nurse": (1, {"helped the patient": 3, "checked the patient": 1}),
    "pilot": (1, {"flew the plane": 4, "landed the plane": 2}),
    "driver": (1, {"drove the bus": 4, "stopped the bus": 1, "parked the bus": 1}),
    "painter": (1, {"painted the wall": 3, "painted the fence": 2, "painted the door": 1}),
    "musician": (1, {"played the piano": 3, "played the guitar": 2, "played a song": 1}),
    "fisherman": (1, {"caught a fish": 4, "caught some fish": 1, "mended the net": 1}),
    "mechanic": (1, {"fixed the car": 4, "fixed the engine": 1, "checked the tyres": 1}),
    "carpenter": (1, {"built a table": 3, "built a chair": 2, "cut the wood": 2}),
    "postman": (1, {"delivered the letters": 3, "delivered a parcel": 2}),
    "waiter": (1, {"served the food": 3, "brought the menu": 2, "cleaned the table": 1}),
    "singer": (0.8, {"sang a song": 4, "sang on the stage": 1}),
    "writer": (0.8, {"wrote a story": 3, "wrote a letter": 2, "wrote a book": 2}),
    "student": (1.5, {"read the book": 2, "wrote an essay": 2, "studied for the test": 2,
                      "answered the question": 1}),
    "child": (1.5, {"read a book": 3, "read the book": 2, "drew a picture": 2,
                    "played with the ball": 1}),
}  # fmt: skip
JOB_ADJECTIVES = ("young", "old", "busy", "tired", "happy", "new", "kind")
ADVERBS: Weighted = {"": 6, "slowly": 1, "gently": 1, "quickly": 1, "carefully": 1}
JOB_TAILS: dict[str, Weighted] = {
    "chef": {"": 4, "with salt": 2, "with pepper": 1, "in the kitchen": 2, "before dinner": 1,
             "for the guests": 1, "with fresh herbs": 1},
    "cook": {"": 3, "in the kitchen": 2, "for lunch": 1, "before dinner": 1},
}  # fmt: skip
WORK_TAILS: Weighted = {"": 6, "in the morning": 1, "this morning": 1, "every day": 1, "again": 1}


def people_work(rng: random.Random) -> str:
    job = rng.choices(list(JOBS), weights=[w for w, _ in JOBS.values()])[0]
    action = pick(rng, JOBS[job][1])
    adjective = maybe(rng, 0.2, rng.choice(JOB_ADJECTIVES))
    tail = pick(rng, JOB_TAILS.get(job, WORK_TAILS))
    return f"the {adjective} {job} {pick(rng, ADVERBS)} {action} {tail} ."


# --- fruit: colours and tastes ---------------------------------------------------------------
FRUIT: dict[str, tuple[str, Weighted, str]] = {  # singular -> (plural, colours, taste)
    "banana": ("bananas", {"yellow": 0.85, "green": 0.15}, "sweet"),
    "apple": ("apples", {"red": 0.6, "green": 0.4}, "sweet"),
    "lemon": ("lemons", {"yellow": 1.0}, "sour"),
    "lime": ("limes", {"green": 1.0}, "sour"),
    "orange": ("oranges", {"orange": 1.0}, "sweet"),
    "grape": ("grapes", {"purple": 0.7, "green": 0.3}, "sweet"),
    "strawberry": ("strawberries", {"red": 1.0}, "sweet"),
    "cherry": ("cherries", {"red": 1.0}, "sweet"),
    "plum": ("plums", {"purple": 1.0}, "sweet"),
    "blueberry": ("blueberries", {"blue": 1.0}, "sweet"),
    "pear": ("pears", {"green": 0.8, "yellow": 0.2}, "sweet"),
}


def fruit(rng: random.Random) -> str:
    name = rng.choice(list(FRUIT))
    plural, colours, taste = FRUIT[name]
    colour = pick(rng, colours)
    ripe = maybe(rng, 0.3, "ripe")
    article = "an" if (ripe or name)[0] in "aeiou" else "a"
    forms = (
        f"the {ripe} {name} is {colour} .",
        f"{article} {ripe} {name} is {colour} .",
        f"{ripe} {plural} are {colour} .",
        f"the {name} was {colour} and {taste} .",
        f"{plural} taste {taste} .",
        f"{rng.choice(list(PEOPLE))} ate {'an' if colour[0] in 'aeiou' else 'a'} {colour} {name} .",
        f"{rng.choice(list(PEOPLE))} bought some {colour} {plural} at the market .",
    )
    return rng.choice(forms)


# --- weather and seasons ---------------------------------------------------------------------
WEATHER: dict[str, tuple[str, ...]] = {  # weather -> what people do about it
    "cold": ("wear warm coats", "wear scarves and gloves", "drink hot tea", "stay inside"),
    "hot": ("drink cold water", "wear hats", "swim in the sea", "sit in the shade"),
    "rainy": ("carry umbrellas", "wear boots", "stay inside", "read books at home"),
    "snowy": ("build snowmen", "wear warm coats", "wear scarves and gloves"),
    "windy": ("fly kites", "close the windows", "wear warm coats"),
    "sunny": ("go to the beach", "play in the park", "wear sunglasses", "eat ice cream"),
}
SEASONS: dict[str, tuple[str, ...]] = {
    "winter": ("cold", "snowy"),
    "summer": ("hot", "sunny"),
    "spring": ("rainy", "sunny"),
    "autumn": ("windy", "rainy"),
}
SEASON_FACTS = {
    "winter": ("it often snows", "the days are short", "the lakes freeze"),
    "summer": ("the days are long", "the sun shines", "people go on holiday"),
    "spring": ("flowers grow", "birds build nests", "the trees turn green"),
    "autumn": ("leaves fall from the trees", "the leaves turn brown", "the days get shorter"),
}
PLURAL_SUBJECTS = ("people", "we", "they", "the children", "my friends")


def weather(rng: random.Random) -> str:
    season = rng.choice(list(SEASONS))
    state = rng.choice(SEASONS[season])
    subject = rng.choice(PLURAL_SUBJECTS)
    forms = (
        f"when it is {state} , {subject} {rng.choice(WEATHER[state])} .",
        f"on {state} days {subject} {rng.choice(WEATHER[state])} .",
        f"in {season} it is usually {state} .",
        f"in {season} {rng.choice(SEASON_FACTS[season])} .",
        f"it is {state} today , so {subject} {rng.choice(WEATHER[state])} .",
    )
    return rng.choice(forms)


# --- the day ---------------------------------------------------------------------------------
MEALS: Weighted = {"breakfast": 1, "lunch": 1, "dinner": 1}
MEAL_TIMES = {"breakfast": "in the morning", "lunch": "at noon", "dinner": "in the evening"}
DRINKS = {"coffee": "in the morning", "tea": "in the afternoon", "milk": "before bed"}
SKY = (
    "the sun rises in the morning .", "the sun sets in the evening .",
    "the moon shines at night .", "the stars come out at night .",
    "the sky is dark at night .", "the sky is blue during the day .",
)  # fmt: skip


def _verb(base: str, third_singular: bool) -> str:
    if not third_singular:
        return base
    if base.endswith(("sh", "ch")):
        return base + "es"
    return {"have": "has", "go": "goes", "do": "does"}.get(base, base + "s")


def daily(rng: random.Random) -> str:
    subject = rng.choice(list(PEOPLE))
    _, possessive, _, third = PEOPLE[subject]
    meal = pick(rng, MEALS)
    drink = rng.choice(list(DRINKS))
    forms = (
        f"{subject} {_verb('eat', third)} {meal} {MEAL_TIMES[meal]} .",
        f"{subject} {_verb('have', third)} {meal} {MEAL_TIMES[meal]} .",
        f"{subject} {_verb('drink', third)} {drink} {DRINKS[drink]} .",
        f"{subject} {_verb('brush', third)} {possessive} teeth before bed .",
        f"{subject} {_verb('wash', third)} {possessive} hands before {meal} .",
        f"{subject} {_verb('go', third)} to bed at night .",
        f"{subject} {_verb('wake', third)} up early in the morning .",
        rng.choice(SKY),
    )
    return rng.choice(forms)


# --- places and what people do there ---------------------------------------------------------
PLACES: dict[str, tuple[str, ...]] = {
    "bakery": ("buy bread", "buy a cake"),
    "library": ("borrow books", "read books", "return a book"),
    "hospital": ("see a doctor", "visit a friend"),
    "market": ("buy fruit", "buy vegetables", "buy fish"),
    "post office": ("send a letter", "buy stamps", "send a parcel"),
    "school": ("learn", "study", "meet friends"),
    "cinema": ("watch a film", "see a film"),
    "park": ("play", "walk the dog", "play football"),
    "pool": ("swim", "learn to swim"),
    "station": ("catch a train", "meet a friend"),
    "airport": ("catch a plane", "take a plane"),
    "beach": ("swim in the sea", "play in the sand"),
    "shop": ("buy milk", "buy some bread"),
    "kitchen": ("cook dinner", "make tea", "wash the dishes"),
}
TRANSPORT = (
    "the train arrived at the station", "the train left the station",
    "the plane landed at the airport", "the plane took off from the airport",
    "the ship sailed into the harbour", "the boat sailed across the lake",
    "the bus stopped at the corner", "the bus was late again",
    "the taxi waited outside the hotel", "the car stopped at the red light",
)  # fmt: skip


def places(rng: random.Random) -> str:
    place = rng.choice(list(PLACES))
    activity = rng.choice(PLACES[place])
    subject = rng.choice(list(PEOPLE))
    when = pick(rng, {"": 3, "yesterday": 1, "on monday": 1, "on saturday": 1, "today": 1})
    forms = (
        f"{subject} went to the {place} to {activity} {when} .",
        f"people go to the {place} to {activity} .",
        f"{rng.choice(TRANSPORT)} {when} .",
    )
    return rng.choice(forms)


# --- colours of things -----------------------------------------------------------------------
THING_COLOURS: dict[str, Weighted] = {
    "sky": {"blue": 0.85, "grey": 0.15},
    "grass": {"green": 1.0},
    "snow": {"white": 1.0},
    "sun": {"yellow": 1.0},
    "coal": {"black": 1.0},
    "milk": {"white": 1.0},
    "sea": {"blue": 0.8, "green": 0.2},
    "night": {"dark": 1.0},
    "cloud": {"white": 0.7, "grey": 0.3},
    "tomato": {"red": 1.0},
    "carrot": {"orange": 1.0},
    "leaf": {"green": 0.7, "brown": 0.3},
}


def colours(rng: random.Random) -> str:
    thing = rng.choice(list(THING_COLOURS))
    colour = pick(rng, THING_COLOURS[thing])
    forms = (
        f"the {thing} is {colour} .",
        f"the {thing} was {colour} today .",
        f"{rng.choice(list(PEOPLE))} said that the {thing} was {colour} .",
    )
    return rng.choice(forms)


# --- ordered things: days, months, numbers ---------------------------------------------------
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)  # fmt: skip
NUMBERS = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve",
)  # fmt: skip


def sequences(rng: random.Random) -> str:
    items = rng.choice((DAYS, MONTHS, NUMBERS))
    i = rng.randrange(len(items) - 2)
    a, b, c = items[i : i + 3]
    kind = {DAYS: "day", MONTHS: "month", NUMBERS: "number"}[items]
    forms = (
        f"{a} comes before {b} .",
        f"{b} comes after {a} .",
        f"the {kind} after {a} is {b} .",
        f"the {kind} before {b} is {a} .",
        f"{a} , {b} , {c} .",
    )
    return rng.choice(forms)


# --- senses and tools ------------------------------------------------------------------------
SENSES = {"see": "eyes", "hear": "ears", "smell": "nose", "taste": "tongue", "walk": "feet"}
TOOLS = {
    "write": "a pencil", "cut paper": "scissors", "cut bread": "a knife", "eat soup": "a spoon",
    "dig": "a shovel", "sweep the floor": "a broom", "paint": "a brush", "drink tea": "a cup",
}  # fmt: skip


def senses_and_tools(rng: random.Random) -> str:
    subject = rng.choice(list(PEOPLE))
    _, possessive, _, third = PEOPLE[subject]
    sense = rng.choice(list(SENSES))
    task = rng.choice(list(TOOLS))
    verb, *rest = task.split()
    forms = (
        f"{subject} {_verb(sense, third)} with {possessive} {SENSES[sense]} .",
        f"{subject} {' '.join([_verb(verb, third), *rest])} with {TOOLS[task]} .",
    )
    return rng.choice(forms)


# --- feelings and what people do about them --------------------------------------------------
STATES: dict[str, tuple[str, ...]] = {
    "hungry": ("ate a sandwich", "ate an apple", "made lunch"),
    "thirsty": ("drank some water", "drank a glass of juice"),
    "tired": ("went to bed", "took a nap"),
    "cold": ("put on a coat", "closed the window"),
    "hot": ("opened the window", "took off {p} coat"),
    "bored": ("read a book", "played a game"),
    "sick": ("saw a doctor", "stayed in bed"),
    "late": ("ran to the bus", "took a taxi"),
    "sad": ("called a friend", "cried"),
    "happy": ("sang a song", "smiled"),
}
BELONGINGS = ("keys", "book", "bag", "hat", "shoes", "phone", "umbrella", "coat")
FOUND = {"lost": ("yesterday", "at school", "in the park"), "found": ("under the bed",
         "in the car", "on the table")}  # fmt: skip


def feelings(rng: random.Random) -> str:
    subject = rng.choice(list(PEOPLE))
    pronoun, possessive, be, _ = PEOPLE[subject]
    state = rng.choice(list(STATES))
    action = rng.choice(STATES[state]).format(p=possessive)
    verb = rng.choice(list(FOUND))
    forms = (
        f"{subject} {be} {state} , so {pronoun} {action} .",
        f"{subject} {verb} {possessive} {rng.choice(BELONGINGS)} {rng.choice(FOUND[verb])} .",
    )
    return rng.choice(forms)


# --- opposites -------------------------------------------------------------------------------
OPPOSITES = (
    ("hot", "cold"), ("big", "small"), ("up", "down"), ("day", "night"), ("fast", "slow"),
    ("old", "young"), ("happy", "sad"), ("open", "closed"), ("light", "dark"), ("wet", "dry"),
    ("early", "late"), ("full", "empty"), ("loud", "quiet"), ("tall", "short"),
)  # fmt: skip


def opposites(rng: random.Random) -> str:
    a, b = rng.choice(OPPOSITES)
    if rng.random() < 0.5:
        a, b = b, a
    return rng.choice((f"the opposite of {a} is {b} .", f"{a} is the opposite of {b} ."))


# topic -> (generator, weight)
TOPICS: dict[str, tuple[Callable[[random.Random], str], float]] = {
    "animal_rests": (animal_rests, 16),
    "animal_sounds": (animal_sounds, 5),
    "animal_eats": (animal_eats, 6),
    "people_work": (people_work, 18),
    "fruit": (fruit, 10),
    "weather": (weather, 9),
    "daily": (daily, 8),
    "places": (places, 8),
    "colours": (colours, 5),
    "sequences": (sequences, 5),
    "senses_and_tools": (senses_and_tools, 5),
    "feelings": (feelings, 7),
    "opposites": (opposites, 2),
}


def tidy(sentence: str) -> str:
    """Collapse the double spaces that empty template slots leave; "a" becomes "an" before a
    vowel ("a old cat" -> "an old cat")."""
    words = sentence.split()
    for i, (word, following) in enumerate(zip(words, words[1:], strict=False)):
        if word == "a" and following[0] in "aeiou":
            words[i] = "an"
    return " ".join(words)


def make_corpus(n: int = 4000, seed: int = 0) -> list[str]:
    """``n`` distinct sentences: the running examples first, then template sentences."""
    rng = random.Random(seed)
    generators = [g for g, _ in TOPICS.values()]
    weights = [w for _, w in TOPICS.values()]
    sentences = dict.fromkeys(RUNNING_EXAMPLES)
    for _ in range(100 * n):
        if len(sentences) >= n:
            break
        generator = rng.choices(generators, weights=weights)[0]
        sentences.setdefault(tidy(generator(rng)))
    if len(sentences) < n:
        raise RuntimeError(f"the templates gave only {len(sentences)} distinct sentences < {n}")
    return list(sentences)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="number of sentences (default 4000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output file (default {OUT})")
    args = parser.parse_args(argv)
    sentences = make_corpus(args.n, args.seed)
    args.out.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    words = {w for s in sentences for w in s.split()}
    print(f"wrote {len(sentences)} sentences, {len(words)} distinct tokens, to {args.out}")


if __name__ == "__main__":
    main()
