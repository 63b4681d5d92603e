"""The audio-term lexicon of the offline tag extractor: canonical one-word tags and the words that mean them.

Place in the flow: extract -> ``curation/extraction/offline_tagger.py`` matches caption words (after simple lemmatisation)
against ``FORMS``. Each line below is ``canonical: other forms``; a form with a space is a phrase matched as
consecutive words. Canonical terms follow the published UTS vocabulary's style (lowercase, one word, hyphenated
compounds such as ``hi-hat``); synonyms collapse onto one canonical term, which is the point of the exercise.

Example::

    FORMS["puppy"]  # ('dog', 'source')
"""
from __future__ import annotations

# Aspects in the order the paper lists them; the extractor keeps this order when it must drop labels.
_LEXICON = {
    "scene": """
        indoor: indoors inside interior
        outdoor: outdoors outside open-air open air
        street: road roadside traffic street intersection crosswalk
        city: urban downtown town
        park: garden playground
        forest: woods woodland jungle
        beach: seaside shore coast
        ocean: sea waves surf
        river: stream creek brook
        lake: pond
        field: meadow countryside rural farmland farm
        kitchen: cooking stove
        bathroom: toilet shower
        office: workplace
        studio: recording studio
        stadium: arena
        church: cathedral chapel
        restaurant: cafe diner pub
        classroom: school
        station: platform subway
        airport: runway
        factory: workshop industrial
        construction: building site construction site
        room: bedroom hall hallway corridor
        home: house household domestic
        crowd: audience people spectators
        nature: natural wildlife
        rain: raining rainfall drizzle downpour rainstorm
        storm: thunderstorm
        wind: windy breeze gust gusts
        thunder: thunderclap
        underwater: submerged
        night: nighttime
    """,
    "source": """
        man: men male-voice
        woman: women
        male: masculine
        female: feminine
        child: children kid kids boy girl toddler
        baby: infant newborn
        speaker: narrator announcer presenter host lecturer
        singer: vocalist vocalists
        choir: chorus
        dog: dogs puppy puppies canine hound
        cat: kitten kitty feline
        bird: birds songbird chirping-bird sparrow pigeon crow parrot seagull
        rooster: cockerel
        chicken: hen hens poultry chick
        duck: ducks goose geese
        cow: cattle moo
        horse: hooves galloping
        sheep: lamb goat
        pig: oink
        frog: toad
        insect: insects cricket crickets cicada bee bees mosquito
        animal: animals creature
        car: cars automobile sedan
        truck: lorry trucks
        bus: buses
        motorcycle: motorbike scooter dirt bike
        train: trains locomotive railway railroad tram
        airplane: aircraft plane jet airliner
        helicopter: chopper
        boat: ship motorboat ferry
        vehicle: vehicles
        engine: motor motors
        siren: sirens
        horn: honk honking car horn
        alarm: alarms
        bell: bells church bell
        clock: ticking clock
        phone: telephone cellphone ringtone smartphone
        computer: laptop mouse
        keyboard: keyboards
        door: doors
        water: waters
        fire: flames crackling fire
        machine: machinery
        drill: drilling
        saw: chainsaw sawing
        hammer: hammering
        tool: tools power tool
        fan: ventilation air conditioner
        vacuum: vacuum cleaner hoover
        microwave: appliance
        dishes: plates cutlery silverware
        glass: glasses
        paper: papers crumpling
        plastic: wrapper
        metal: metallic-object
        wood: wooden
        gun: gunshot gunshots gunfire rifle pistol shotgun
        explosion: explosions blast
        firework: fireworks
        footsteps: footstep steps walking stomping
        hands: handclap
        instrument: instruments
        guitar: guitars acoustic guitar electric guitar
        bass: bassline bass guitar
        piano: pianos
        organ: organs
        synth: synthesizer synthesizers synths synthesiser
        drums: drum drumming drummer drumbeat drum kit
        snare: snares snare drum
        kick: kick drum
        hi-hat: hihat hi hat hi-hats hihats
        cymbal: cymbals
        percussion: percussive percussions
        tambourine: shaker
        violin: violins fiddle
        cello: cellos
        strings: string section
        harp: harps
        flute: flutes
        saxophone: sax
        trumpet: trumpets
        trombone: trombones
        brass: horns
        clarinet: clarinets
        harmonica: accordion
        ukulele: banjo mandolin
        sitar: tabla
        vocals: vocal singing sung voice-over
        voice: voices
        orchestra: orchestral symphony
        band: ensemble
        dj: turntable scratching
    """,
    "event": """
        speech: speaking speaks speak talking talk talks spoken conversation dialogue chatting
        narration: narrating narrates
        conversation: conversing
        whisper: whispering whispers whispered
        shout: shouting shouts yelling yells yell
        scream: screaming screams shriek
        laughter: laughing laughs laugh giggle giggling chuckle
        crying: cry cries sobbing weeping
        cough: coughing coughs
        sneeze: sneezing
        breathing: breath breathes breathe panting
        snoring: snore snores snored
        singing: sings sing
        humming: hums hum
        whistle: whistling whistles
        clapping: clap applauding cheering cheer cheers
        bark: barking barks barked woof yapping
        meow: meowing meows
        quack: quacking quacks
        flapping: flap flaps wings
        chirp: chirping chirps tweeting birdsong birdsongs
        caw: cawing caws
        growl: growling growls
        howl: howling
        roar: roaring roars
        buzz: buzzing buzzes
        ring: ringing rings rang
        beep: beeping beeps
        honk: tooting
        knock: knocking knocks
        tap: tapping taps
        click: clicking clicks
        tick: ticking ticks
        bang: banging bangs
        thud: thuds thump thumps thumping
        crash: crashing crashes
        clank: clanking clanks clang clanging clatter clattering
        clink: clinking
        squeak: squeaking squeaks creak creaking creaks
        squeal: squealing screech screeching
        rustling: rustle rustles rustled
        scraping: scrape scrapes scratching scratch
        splash: splashing splashes
        spray: sprays sprayed spraying aerosol
        pouring: pour pours poured
        dripping: drip drips trickling trickle
        flowing: flow flows running-water
        bubbling: bubbles gurgling
        sizzling: sizzle frying
        crackling: crackle crackles
        rumble: rumbling rumbles
        whoosh: whooshing swoosh
        hiss: hissing hisses
        revving: revs rev
        acceleration: accelerating accelerates
        idling: idles idle
        passing: passes passing-by drives by
        driving: drives drive
        braking: brakes skid skidding
        typing: types typed
        grinding: grind grinds
        sanding: sander
        impact: hit hits hitting slam slamming slams
        wail: wailing
        vibration: vibrating vibrates
        static: staticky
        music: musical song songs tune
        beat: beats
        rhythm: rhythmic
        melody: melodies melodic
        chord: chords
        riff: riffs
        solo: soloing
        loop: loops looping looped
        silence: silent quiet-pause
    """,
    "trait": """
        reverb: reverberation reverberant reverberates echoing echoes echoey echo
        distorted: distortion distorting overdriven
        muffled: muffle muted
        loud: loudly
        quiet: quietly soft softly faint faintly
        noisy: noise noises
        clear: clearly crisp
        lo-fi: low quality low-quality poor quality lo fi lofi low fidelity low-fidelity
        high-fidelity: high quality high-quality hi-fi
        mono: monophonic
        stereo: panned
        compressed: compression
        electronic: electronically
        acoustic: acoustically
        electric: electrified
        synthetic: synthesized synthesised
        high-pitched: high pitched shrill
        low-pitched: low pitched deep
        high-frequency: high frequency
        low-frequency: low frequency rumbly
        fast: fast-paced uptempo up-tempo quick rapid rapidly quickly
        slow: slowly slow-paced
        steady: constant continuous continuously consistent
        intermittent: intermittently sporadic periodic periodically
        repetitive: repeated repeating repeatedly repetition
        sudden: suddenly abrupt abruptly
        distant: distance far-off faraway
        close: nearby close-up
        mechanical: mechanically
        metallic: metal-like tinny
        harsh: abrasive
        warm: warmth
        bright: brilliant
        dry: anechoic
        ambient: ambience atmospheric atmosphere soundscape
        background: backdrop
        live: concert
        recording: recorded
        amateur: homemade
        professional: polished
        vintage: retro old-fashioned
        major: major key
        minor: minor key
    """,
    "function": """
        instrumental: instrumentals
        advertisement: commercial jingle
        broadcast: radio television tv
        podcast: podcasts
        interview: interviewing
        lecture: presentation
        tutorial: instructional instruction
        game: video game gaming arcade
        film: movie cinematic soundtrack
        dance: dancing danceable
        meditation: relaxing relaxation
        ceremony: wedding
        sports: sport
        emergency: ambulance police
        notification: alert alerts
        warning: warns
        announcement: announcing announces announced
        prayer: praying worship
        celebration: party festive
        calm: calming peaceful serene tranquil relaxed
        excited: exciting excitement energetic lively
        happy: cheerful joyful upbeat
        sad: sadness melancholic melancholy sorrowful mournful
        angry: anger aggressive
        tense: tension suspense suspenseful
        emotional: emotive
        romantic: romance
        epic: dramatic
        rock: rock-music
        pop: pop-music
        jazz: jazzy
        classical: baroque
        hip-hop: hip hop rap rapping
        techno: edm house-music
        folk: folk-music
        country: country-music
        metal: heavy metal
        blues: bluesy
        reggae: ska
        latin: salsa
        drone: droning
        ballad: ballads
        lullaby: lullabies
    """,
}


def _build() -> tuple[dict[str, tuple[str, str]], dict[str, int]]:
    forms: dict[str, tuple[str, str]] = {}
    for aspect, block in _LEXICON.items():
        for line in block.strip().splitlines():
            canonical, _, rest = line.strip().partition(":")
            canonical = canonical.strip()
            # A canonical written with '-' is also reachable as separate words ("hi hat").
            entries = [canonical, canonical.replace("-", " ")] + _split_forms(rest)
            for form in entries:
                forms.setdefault(form, (canonical, aspect))
    return forms, {aspect: i for i, aspect in enumerate(_LEXICON)}


def _split_forms(rest: str) -> list[str]:
    # Forms are single words separated by spaces, except known two-word phrases written with a space between
    # words that also occur as a listed phrase: those are kept whole by the pairing rule below.
    words = rest.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        pair = f"{words[i]} {words[i + 1]}" if i + 1 < len(words) else None
        if pair in _PHRASES:
            out.append(pair)
            i += 2
        else:
            out.append(words[i])
            i += 1
    return out


# Two-word forms inside the lexicon lines (kept whole when splitting a line).
_PHRASES = {
    "open air", "recording studio", "construction site", "church bell", "ticking clock", "crackling fire",
    "power tool", "air conditioner", "vacuum cleaner", "acoustic guitar", "electric guitar", "bass guitar",
    "drum kit", "snare drum", "kick drum", "hi hat", "string section", "dirt bike", "car horn", "drives by",
    "low quality", "poor quality", "lo fi", "low fidelity", "high quality", "high pitched", "low pitched",
    "high frequency", "low frequency", "major key", "minor key", "video game", "hip hop", "heavy metal",
}

FORMS, ASPECT_RANK = _build()


# ----------------------------------------------------------------------------------------- open-vocabulary layer
# The open-vocabulary extractor (curation/extraction/open_vocab.py) keeps every word it finds and uses the lexicon
# only to fold a word onto the same concept's canonical spelling. Most lines above also fold narrower terms onto
# broader ones (sparrow -> bird, cheering -> clapping, accordion -> harmonica): right for a closed list, a loss for an
# open one. So only two kinds of fold are taken from the lexicon: spelling or inflection / derivation variants of
# the canonical (``_is_variant``: hi hat -> hi-hat, reverberant -> reverb, drumming -> drums) and the true synonyms
# listed here. Everything else stays as the caption says it.
TRUE_SYNONYM_FORMS = frozenset("""
open-air|open air|urban|woodland|woods|seaside|vocalist|vocalists|chorus|canine|feline|kitty|cockerel|poultry|cattle
infant|newborn|kid|kids|masculine|feminine|automobile|lorry|motorbike|aircraft|plane|airliner|chopper|motor|motors
telephone|cellphone|smartphone|honk|honking|fiddle|sax|speaking|speaks|speak|talking|talk|talks|spoken|yelling|yells
yell|shriek|sobbing|weeping|cry|cries|applauding|woof|tweeting|swoosh|song|songs|tune|musical|low quality|low-quality
poor quality|lo fi|lofi|low fidelity|low-fidelity|high quality|high-quality|hi-fi|uptempo|up-tempo|movie|anger|jazzy|sadness
""".replace("\n", "|").strip("|").split("|"))
# Variants by spelling that are still a different tag in the release's vocabulary.
NOT_FOLDED = frozenset({"noise", "noises", "rhythmic", "major key", "minor key", "recorded", "scratch", "handclap"})


def _is_variant(form: str, canonical: str) -> bool:
    """Same word up to separators, or a shared stem: a common prefix of 4+ letters missing at most 3 letters of
    the shorter word (reverb / reverberation, drum / drumming, loud / loudly; not home / household)."""
    a, b = form.replace("-", "").replace(" ", ""), canonical.replace("-", "").replace(" ", "")
    if a == b:
        return True
    prefix = 0
    for x, y in zip(a, b):
        if x != y:
            break
        prefix += 1
    return prefix >= 4 and prefix >= min(len(a), len(b)) - 3


def _build_folds() -> dict[str, tuple[str, str]]:
    folds = {}
    for form, (canonical, aspect) in FORMS.items():
        if form in NOT_FOLDED:
            continue
        if form == canonical or form in TRUE_SYNONYM_FORMS or _is_variant(form, canonical):
            folds[form] = (canonical, aspect)
    return folds


# form -> (canonical, aspect) for the folds the open-vocabulary extractor applies.
FOLDS = _build_folds()
