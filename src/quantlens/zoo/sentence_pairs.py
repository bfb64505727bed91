"""The paraphrase pairs of :mod:`quantlens.zoo.sentences`: two sentences saying the same
thing in other words, grouped by topic (several pairs share one)."""

PAIRS: tuple[tuple[str, str], ...] = (
    # cooking
    (
        "Simmer the tomato sauce for twenty minutes.",
        "Let the tomato sauce cook gently for about twenty minutes.",
    ),
    (
        "Preheat the oven to two hundred degrees before baking.",
        "Heat the oven up to 200 degrees before you put the cake in.",
    ),
    ("She chopped the onions very finely.", "The onions were diced into tiny pieces by her."),
    ("Add a pinch of salt to the boiling water.", "Put a little salt in the water once it boils."),
    ("The bread needs to rise for an hour.", "Leave the dough to prove for sixty minutes."),
    (
        "He burned the rice because he forgot about it.",
        "The rice got scorched since he didn't remember it was on the stove.",
    ),
    (
        "Whisk the eggs and sugar until pale.",
        "Beat the sugar with the eggs until the mixture turns light in colour.",
    ),
    ("This soup tastes far too salty.", "There is way too much salt in this soup."),
    (
        "Fresh basil makes the pasta smell wonderful.",
        "The pasta has a lovely aroma thanks to the fresh basil.",
    ),
    (
        "Marinate the chicken overnight in yoghurt and spices.",
        "Leave the chicken in a spiced yoghurt marinade until morning.",
    ),
    # sport
    (
        "The striker scored twice in the second half.",
        "After the break the forward found the net two times.",
    ),
    (
        "Our team lost the final on penalties.",
        "We were beaten in the final after a penalty shoot-out.",
    ),
    (
        "She has been training for the marathon since January.",
        "Since the start of the year she has prepared for the marathon.",
    ),
    ("The tennis match was delayed by rain.", "Rain pushed back the start of the tennis game."),
    (
        "He broke the national record in the hundred metres.",
        "He ran the 100 m faster than any athlete in the country ever had.",
    ),
    ("The referee showed him a red card.", "He was sent off by the referee."),
    (
        "The cyclists climbed the mountain pass in thick fog.",
        "The riders rode up the col while dense fog surrounded them.",
    ),
    (
        "Swimming laps every morning keeps him fit.",
        "He stays in shape by swimming lengths of the pool each morning.",
    ),
    (
        "The coach was sacked after five defeats in a row.",
        "The manager lost his job after the team lost five straight games.",
    ),
    (
        "The stadium was full for the derby.",
        "Every seat in the ground was taken for the local derby.",
    ),
    # science
    (
        "Water boils at a lower temperature at high altitude.",
        "Up in the mountains water starts boiling before it reaches 100 degrees.",
    ),
    (
        "The telescope discovered a planet orbiting a distant star.",
        "A far-away star was found to have a planet circling it.",
    ),
    (
        "Plants convert sunlight into chemical energy.",
        "Through photosynthesis plants turn light into stored energy.",
    ),
    (
        "The experiment had to be repeated because of contamination.",
        "The samples were contaminated, so the test was run again.",
    ),
    ("Electrons carry a negative charge.", "An electron is negatively charged."),
    (
        "The vaccine trial enrolled thousands of volunteers.",
        "Thousands of people signed up for the vaccine study.",
    ),
    (
        "Ice is less dense than liquid water, so it floats.",
        "Frozen water floats because it weighs less per volume than liquid water.",
    ),
    (
        "The fossil is about sixty million years old.",
        "Scientists dated the fossil to roughly sixty million years ago.",
    ),
    (
        "Sound travels faster in water than in air.",
        "Sound waves move more quickly through water than through air.",
    ),
    (
        "Her research focuses on how bees navigate.",
        "She studies the way honeybees find their way around.",
    ),
    # travel
    (
        "Our flight was cancelled because of the storm.",
        "The storm forced the airline to cancel our flight.",
    ),
    (
        "We missed the last train and had to take a taxi.",
        "Since the final train had gone, we got a cab.",
    ),
    ("The hotel room had a view of the sea.", "From our hotel room we could see the ocean."),
    ("Don't forget to bring your passport.", "Remember to pack your passport."),
    ("The museum is closed on Mondays.", "You can't visit the museum on a Monday."),
    (
        "They backpacked across South America for six months.",
        "For half a year they travelled around South America with rucksacks.",
    ),
    (
        "The queue at passport control took over an hour.",
        "We waited more than sixty minutes to get through border control.",
    ),
    (
        "The old town is best explored on foot.",
        "Walking is the best way to see the historic centre.",
    ),
    (
        "I lost my luggage on the way to Tokyo.",
        "The airline misplaced my suitcase on my trip to Tokyo.",
    ),
    (
        "The ferry to the island leaves every two hours.",
        "A boat departs for the island every couple of hours.",
    ),
    # finance
    (
        "The central bank raised interest rates again.",
        "Once more the central bank increased the cost of borrowing.",
    ),
    ("Stock prices fell sharply on Friday.", "Shares dropped steeply at the end of the week."),
    ("She is saving money to buy a house.", "She puts money aside so she can afford a home."),
    (
        "Inflation reached its highest level in a decade.",
        "Prices are rising faster than at any point in ten years.",
    ),
    (
        "The company reported a loss for the third quarter.",
        "The firm lost money between July and September.",
    ),
    (
        "He pays off his credit card in full every month.",
        "Each month he clears his whole credit card balance.",
    ),
    (
        "The startup raised ten million dollars from investors.",
        "Investors put ten million dollars into the young company.",
    ),
    (
        "Diversifying your portfolio reduces risk.",
        "Spreading your investments across assets lowers your risk.",
    ),
    (
        "The bank charged me a fee for the transfer.",
        "I had to pay the bank a charge to send the money.",
    ),
    (
        "Taxes on fuel will go up next year.",
        "Next year the duty on petrol and diesel will increase.",
    ),
    # health
    (
        "Drinking enough water helps prevent headaches.",
        "Staying well hydrated can stop headaches from starting.",
    ),
    ("The doctor told him to get more sleep.", "His physician advised him to rest more at night."),
    (
        "Regular exercise lowers blood pressure.",
        "Working out often brings your blood pressure down.",
    ),
    ("She sprained her ankle while running.", "She twisted her ankle during a run."),
    ("Wash your hands before eating.", "Clean your hands before meals."),
    (
        "The flu spreads quickly in winter.",
        "Influenza passes rapidly from person to person in the cold months.",
    ),
    (
        "He has been allergic to peanuts since childhood.",
        "Ever since he was a child, peanuts have caused him an allergic reaction.",
    ),
    (
        "Eating vegetables every day is good for you.",
        "A daily portion of vegetables benefits your health.",
    ),
    (
        "The nurse took my temperature and pulse.",
        "My temperature and heart rate were checked by the nurse.",
    ),
    (
        "Too much screen time can strain your eyes.",
        "Looking at screens for hours may tire your eyes.",
    ),
    # technology
    (
        "The update fixed a bug that crashed the app.",
        "After the patch, the application no longer crashes.",
    ),
    ("My laptop battery drains very quickly.", "The battery of my notebook runs out fast."),
    (
        "Restart the router if the internet stops working.",
        "When the connection drops, turn the router off and on again.",
    ),
    ("The new phone has a much better camera.", "Photos from the latest phone look far sharper."),
    (
        "He wrote a script to back up his files every night.",
        "Every night a program he wrote copies his files for safekeeping.",
    ),
    ("The website was down for three hours.", "For three hours nobody could reach the site."),
    (
        "Use a password manager to keep your accounts safe.",
        "A password manager helps protect your online accounts.",
    ),
    (
        "The model was trained on millions of images.",
        "Millions of pictures were used to train the network.",
    ),
    ("The printer is out of ink again.", "Once more the printer has run out of ink."),
    (
        "Quantization makes neural networks smaller and faster.",
        "Storing a network's weights with fewer bits shrinks it and speeds it up.",
    ),
    # weather
    ("It is going to rain all weekend.", "The forecast says Saturday and Sunday will be wet."),
    (
        "The heatwave broke records across the country.",
        "Temperatures nationwide were the highest ever measured.",
    ),
    (
        "Heavy snow closed the mountain roads.",
        "The roads through the mountains were shut by deep snow.",
    ),
    ("A strong wind knocked down several trees.", "Several trees were blown over by the gale."),
    ("The morning fog cleared by noon.", "By midday the early mist had lifted."),
    ("It has not rained here for two months.", "We have had no rain for eight weeks."),
    (
        "Thunderstorms are expected this evening.",
        "There will probably be thunder and lightning tonight.",
    ),
    (
        "The river flooded after days of rain.",
        "Several days of downpours made the river burst its banks.",
    ),
    (
        "It was so cold that the lake froze over.",
        "The lake turned to ice because of the freezing temperatures.",
    ),
    (
        "Bring sunscreen, it will be very sunny.",
        "Pack some sun cream because there will be lots of sunshine.",
    ),
    # history
    (
        "The Roman Empire built roads across Europe.",
        "The Romans constructed a network of roads throughout Europe.",
    ),
    ("The Berlin Wall fell in 1989.", "In 1989 the wall dividing Berlin came down."),
    (
        "The printing press spread knowledge quickly.",
        "Printing with movable type let ideas circulate fast.",
    ),
    (
        "The castle was besieged for a whole year.",
        "Enemy troops surrounded the fortress for twelve months.",
    ),
    (
        "Ancient Egyptians built the pyramids as tombs.",
        "The pyramids were made by the Egyptians to bury their kings.",
    ),
    ("The war ended with a peace treaty.", "A peace agreement brought the fighting to a close."),
    (
        "Explorers sailed around the world for the first time.",
        "The first voyage circling the globe was completed by sailors.",
    ),
    (
        "The industrial revolution began in Britain.",
        "Britain was where industrialisation first took off.",
    ),
    (
        "The king was overthrown by a revolution.",
        "A popular uprising removed the monarch from power.",
    ),
    (
        "Historians still debate the cause of the collapse.",
        "Scholars continue to argue about why the civilisation fell.",
    ),
    # music
    ("She plays the violin in an orchestra.", "She is a violinist in a symphony orchestra."),
    (
        "The concert was sold out within minutes.",
        "All the tickets for the show went in a few minutes.",
    ),
    ("He is learning to play the guitar.", "He has started taking guitar lessons."),
    (
        "The band released their first album last year.",
        "Last year the group put out their debut record.",
    ),
    (
        "The song was stuck in my head all day.",
        "I couldn't stop hearing that tune in my mind the whole day.",
    ),
    (
        "The choir sang beautifully at the wedding.",
        "At the wedding the singers performed wonderfully.",
    ),
    ("Turn the music down, it is too loud.", "Please lower the volume, the music is deafening."),
    ("The pianist played from memory.", "The pianist performed without any sheet music."),
    ("Jazz grew out of blues and ragtime.", "Blues and ragtime were the roots of jazz."),
    ("The drummer kept perfect time.", "The drummer's rhythm never wavered."),
    # home and everyday life
    ("The kitchen tap is leaking.", "Water is dripping from the sink faucet."),
    ("I need to do the laundry tonight.", "This evening I have to wash my clothes."),
    ("The children are playing in the garden.", "The kids are outside playing in the yard."),
    (
        "Our neighbours are very noisy at night.",
        "The people next door make a lot of noise after dark.",
    ),
    (
        "He forgot his keys and was locked out.",
        "Having left his keys inside, he couldn't get back in.",
    ),
    ("The cat sleeps on the sofa all afternoon.", "All afternoon the cat naps on the couch."),
    ("We painted the living room blue.", "The lounge walls now have a coat of blue paint."),
    (
        "The dog barks whenever the postman comes.",
        "Each time the mail carrier arrives, the dog starts barking.",
    ),
    ("She waters the plants every Sunday.", "Every Sunday she gives the houseplants water."),
    (
        "The heating broke during the coldest week of the year.",
        "Our boiler failed in the most freezing week of the winter.",
    ),
    # work and education
    ("The meeting has been moved to Thursday.", "We rescheduled the meeting for Thursday."),
    ("She was promoted to team leader.", "She got a promotion and now leads the team."),
    ("The students have an exam next week.", "Next week the pupils will sit a test."),
    ("He works from home two days a week.", "Twice a week he does his job remotely."),
    ("The deadline for the report is Friday.", "The report must be handed in by Friday."),
    ("The lecture was too long and rather boring.", "The talk dragged on and was quite dull."),
    ("She is studying medicine at university.", "She is a medical student."),
    ("The company is hiring new engineers.", "The firm is recruiting more engineers."),
    (
        "He quit his job to start his own business.",
        "He resigned so he could found his own company.",
    ),
    (
        "The library extended its opening hours during exams.",
        "During exam season the library stays open longer.",
    ),
    # nature and animals
    ("Bees are essential for pollinating crops.", "Many crops depend on bees to pollinate them."),
    ("The whales migrate south every winter.", "Each winter the whales travel to southern waters."),
    (
        "The forest fire destroyed thousands of hectares.",
        "Thousands of hectares of woodland burned in the wildfire.",
    ),
    ("Owls hunt mostly at night.", "Owls are nocturnal hunters."),
    ("The coral reef is losing its colour.", "The reef's corals are bleaching."),
    (
        "Wolves were reintroduced to the national park.",
        "The park brought wolves back after they had disappeared.",
    ),
)
